import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { uniqueId } from '../../../../test/support/ids';
import { useQueueScripts } from '../../../../test/support/queue-scripts';
import { buildEnvelope, envelopeId, envelopeTs, markSent, messageFrame } from '../../../protocol/envelope';

/** The envelope readers of includes/envelope.lua against protocol/envelope.ts's, on a real Redis. Set-up and helpers: test/support/queue-scripts.ts. */
const { client, queue, keys, ME, NOW } = useQueueScripts();

describe('envelope readers: Lua (includes/envelope.lua) and TypeScript (protocol/envelope.ts)', () => {
  const fragment = readFileSync(join(__dirname, 'envelope.lua'), 'utf8');
  /** envelopeId, envelopeTs and markSent of envelope.lua, on each entry. */
  async function luaRead(entries: string[]): Promise<Array<[string | null, number | null, string]>> {
    const out = (await client.eval(
      `${fragment}\nlocal out = {}\nfor i = 1, #ARGV do out[i] = {envelopeId(ARGV[i]) or false, envelopeTs(ARGV[i]) or false, markSent(ARGV[i])} end\nreturn out`,
      0,
      ...entries,
    )) as Array<[string | null, number | null, string]>;
    return out;
  }
  const fields = [
    { id: 'a1.x', channel: 'rm.users.u1', payload: 'plain', ts: 1795986163346 },
    { id: 'a1.y', channel: 'rm.channels.g1', payload: 'with {"ts":12}} inside', ts: 1 },
    { id: 'a1.z', channel: 'rm.users.u1', payload: '"ts":5}}', ts: 1795986163347, ttl: 60 },
    { id: 'a1.w', channel: 'rm.users.u1', payload: 'q "quotes" \\ and \n ünï ✓ 😀', ts: 1795986163348, collapseKey: 'score "1"' },
    { id: 'a1.v', channel: 'rm.users.u1', payload: '', ts: 1795986163349, ttl: 0, collapseKey: ',"ts":1}}' },
  ];

  it('read the same id and ts of envelopes built by buildEnvelope, sent or not', async () => {
    const built = fields.map((f) => buildEnvelope(f));
    const entries = [...built, ...built.map(markSent)];

    const lua = await luaRead(entries);

    expect(lua.map(([id]) => id)).toEqual(entries.map((e) => envelopeId(e)));
    expect(lua.map(([, ts]) => ts)).toEqual(entries.map((e) => envelopeTs(e)));
    expect(lua.map(([, , sent]) => sent)).toEqual(entries.map(markSent));
    expect(lua.map(([id, ts]) => [id, ts])).toEqual([...fields, ...fields].map((f) => [f.id, f.ts]));
    for (const [i, entry] of entries.entries()) {
      const { id, channel, payload, ts, ttl, collapseKey } = fields[i % fields.length];
      expect(JSON.parse(messageFrame(entry))).toEqual({ event: 'message', data: { id, channel, payload, ts, ...(ttl === undefined ? {} : { ttl }), ...(collapseKey === undefined ? {} : { collapseKey }) } });
    }
  });

  it('both see no envelope in raw entries', async () => {
    const raws = ['plain text', '{"a":1}', '{"rm":5}', '{"rm":{"id":"x"', '"ts":5}}', ''];
    const nonEmpty = raws.filter((r) => r !== '');

    const lua = await luaRead(nonEmpty);

    expect(lua.map(([id]) => id)).toEqual(nonEmpty.map(() => null));
    expect(lua.map(([, ts]) => ts)).toEqual(nonEmpty.map(() => null));
    expect(nonEmpty.map((r) => envelopeId(r))).toEqual(nonEmpty.map(() => undefined));
    expect(raws.map((r) => envelopeTs(r))).toEqual(raws.map(() => undefined));
  });

  it('read raw entries wrapped by read-5.lua as the Lua wrote them: JSON.parse of messageFrame gives exactly the fields', async () => {
    const raws = ['plain', 'q "quotes" \\ back/slash', 'line\nbreak\ttab\u0001', 'ünïcödé ✓ 😀', '{"ts":12}}', '{"a":1}', '12345'];
    const user = uniqueId();
    await client.rpush(keys.queue(user), ...raws);
    await queue.attach(user, 'c1', ME);

    const { rows } = await queue.read(user, 0, 100, NOW);
    const lua = await luaRead(rows.map((r) => r.envelope));

    expect(rows).toHaveLength(raws.length);
    for (const [i, { envelope }] of rows.entries()) {
      const data = JSON.parse(messageFrame(envelope)).data;
      expect(data).toEqual({ id: envelopeId(envelope), channel: keys.userChannel(user), payload: raws[i], ts: NOW });
      expect(Object.keys(data)).toEqual(['id', 'channel', 'payload', 'ts']);
      expect(envelopeTs(envelope)).toBe(NOW);
      expect(lua[i]).toEqual([envelopeId(envelope), NOW, markSent(envelope)]);
      expect(JSON.parse(markSent(envelope))).toEqual({ rm: data, sent: true });
    }
  });
});
