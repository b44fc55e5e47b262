import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useRedis } from '../../test/support/fixtures';
import { loadScript } from '../redis/lua-scripts';
import { buildEnvelope, markSent } from './envelope';
import { formatNotice, formatNotices, parseNotice, parseNotices, type Notice } from './notices';

const QUEUE_LUA = join(__dirname, '..', 'queue', 'lua');

const envelope = buildEnvelope({ id: 'lq3k0a2b.1', channel: 'rm.users.u1', payload: 'plain', ts: 1795986163346 });
const tricky = buildEnvelope({
  id: 'lq3k0a2b.2z',
  channel: 'rm.channels.g-1',
  payload: 'pipes | and, commas m|u1|7|x\n"quotes" \\ ünï ✓ 😀 r|u1|id|*',
  ts: 1795986163347,
  ttl: 60,
  collapseKey: 'k|1',
});

/** Every kind of notice, each with the line it is on the channel: the bytes are part of the format. */
const samples = {
  message: [
    [{ kind: 'message', user: 'u1', position: 0, envelope }, `m|u1|0|${envelope}`],
    [{ kind: 'message', user: 'A.b_c@d-e', position: 1234567890123, envelope: tricky }, `m|A.b_c@d-e|1234567890123|${tricky}`],
    [{ kind: 'message', user: 'u1', position: 17, envelope: markSent(envelope) }, `m|u1|17|${markSent(envelope)}`],
  ],
  acked: [
    [{ kind: 'acked', user: 'u1', ids: ['lq3k0a2b.1'] }, 'a|u1|lq3k0a2b.1'],
    [{ kind: 'acked', user: 'u2', ids: ['lq3k0a2b.1', 'lq3k0a2b.2z', 'lq3k0a2b.r1.3'] }, 'a|u2|lq3k0a2b.1,lq3k0a2b.2z,lq3k0a2b.r1.3'],
  ],
  sync: [[{ kind: 'sync', user: 'u1' }, 's|u1']],
  replaced: [[{ kind: 'replaced', user: 'u1', conn: '0mbq2x1kf.002s.9f1c2e3a' }, 'k|u1|0mbq2x1kf.002s.9f1c2e3a']],
  retracted: [
    [{ kind: 'retracted', user: 'u1', id: 'lq3k0a2b.1', every: false }, 'r|u1|lq3k0a2b.1'],
    [{ kind: 'retracted', user: 'u1', id: 'lq3k0a2b.1', every: true }, 'r|u1|lq3k0a2b.1|*'],
  ],
} satisfies { [K in Notice['kind']]: Array<[Extract<Notice, { kind: K }>, string]> };
const all: Array<[Notice, string]> = Object.values(samples).flat();
const notices = all.map(([notice]) => notice);

describe('notices (protocol/notices.ts)', () => {
  it('formats every kind as its line', () => {
    for (const [notice, line] of all) expect(formatNotice(notice)).toBe(line);
    expect(formatNotices(notices)).toBe(all.map(([, line]) => line).join('\n'));
  });

  it('parses every line back into its notice, one PUBLISH of several lines too', () => {
    for (const [notice, line] of all) expect(parseNotice(line)).toEqual(notice);
    expect(parseNotices(formatNotices(notices))).toEqual(notices);
  });

  it('reads `s|user` up to a further field, as it always did', () => {
    expect(parseNotice('s|u1|more')).toEqual({ kind: 'sync', user: 'u1' });
  });

  it('leaves out unknown kinds and malformed lines', () => {
    const bad = ['', 'x|u1|1', 'sync|1', 'm', 'm|u1', 'm|u1|0', 'm|u1||e', 'm|u1|-1|e', 'm|u1|1.5|e', 'm|u1|x|e', 'a|u1', 'k|u1', 'r|u1', 'mu1|0|e'];
    for (const line of bad) expect(parseNotice(line)).toBeUndefined();
    expect(parseNotices([...bad, 's|u9'].join('\n'))).toEqual([{ kind: 'sync', user: 'u9' }]);
  });
});

describe('notices: Lua (queue/lua/includes/notices.lua) and TypeScript (protocol/notices.ts)', () => {
  const s = useRedis();

  /**
   * The lines notices.lua builds for these notices (given as JSON, each field as the scripts
   * pass it: a position as a number), then all of them in one noticeBatch.
   */
  async function luaLines(list: Notice[]): Promise<{ lines: string[]; batch: string }> {
    const fragment = loadScript(QUEUE_LUA, join('includes', 'notices.lua'));
    const script = `${fragment}
local lines = {}
for i, n in ipairs(cjson.decode(ARGV[1])) do
  if n.kind == 'message' then lines[i] = noticeMessage(n.user, n.position, n.envelope)
  elseif n.kind == 'acked' then lines[i] = noticeAcked(n.user, n.ids)
  elseif n.kind == 'sync' then lines[i] = noticeSync(n.user)
  elseif n.kind == 'replaced' then lines[i] = noticeReplaced(n.user, n.conn)
  elseif n.kind == 'retracted' then lines[i] = noticeRetracted(n.user, n.id, n.every)
  else return redis.error_reply('no builder for ' .. tostring(n.kind)) end
end
return {lines, noticeBatch(lines)}`;
    const [lines, batch] = (await s.r.eval(script, 0, JSON.stringify(list))) as [string[], string];
    return { lines, batch };
  }

  it('Lua builds every kind byte for byte as formatNotice, and parseNotice reads it back', async () => {
    const { lines } = await luaLines(notices);

    expect(lines).toEqual(all.map(([, line]) => line));
    expect(lines).toEqual(notices.map(formatNotice));
    expect(lines.map(parseNotice)).toEqual(notices);
  });

  it('a batch of Lua lines is one PUBLISH that parseNotices splits into the same notices, in order', async () => {
    const { batch } = await luaLines(notices);

    expect(batch).toBe(formatNotices(notices));
    expect(parseNotices(batch)).toEqual(notices);
  });

  it('every notice a TypeScript test builds, Lua builds the same', async () => {
    const built: Notice[] = [
      { kind: 'message', user: 'u3', position: 2 ** 40, envelope: '{"rm":{"id":"x","channel":"rm.users.u3","payload":"|","ts":1}}' },
      { kind: 'acked', user: 'u3', ids: ['x'] },
      { kind: 'retracted', user: 'u3', id: 'x', every: false },
    ];
    const { lines } = await luaLines(built);

    expect(lines).toEqual(built.map(formatNotice));
    expect(lines.map(parseNotice)).toEqual(built);
  });

  it('every script that publishes a notice builds it with notices.lua', () => {
    const scripts = readdirSync(QUEUE_LUA).filter((file) => file.endsWith('.lua'));
    // A script publishes itself, or through notices.lua's publishNotices (the notices of a call, one PUBLISH per instance).
    const publishing = scripts.filter((file) => /'PUBLISH'|publishNotices\(/.test(readFileSync(join(QUEUE_LUA, file), 'utf8')));

    expect(publishing.sort()).toEqual(['ack-5.lua', 'acks.lua', 'attach-5.lua', 'retract-5.lua', 'route.lua']);
    for (const file of publishing) {
      const source = readFileSync(join(QUEUE_LUA, file), 'utf8');
      expect(source).toContain('--- @include "notices"');
      expect(source).not.toMatch(/'[maskr]\|'/);
      expect(loadScript(QUEUE_LUA, file)).toContain('local function noticeMessage(');
    }
  });
});
