import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useRedis } from '../../test/support/fixtures';
import { loadScript } from '../redis/lua-scripts';
import { formatControlLine, parseControlLine, type ControlLine } from './control-lines';

const ROUTER_LUA = join(__dirname, '..', 'router', 'lua');

/** Both kinds of control line, each with its bytes on the channel: they are part of the format. */
const samples = {
  handOver: [
    [{ kind: 'handOver', shard: 0, to: 'i-1', epoch: 1 }, 'h|0|i-1|1'],
    [{ kind: 'handOver', shard: 63, to: 'host.example-7f3a9c_2', epoch: 123456789 }, 'h|63|host.example-7f3a9c_2|123456789'],
  ],
  taken: [
    [{ kind: 'taken', shard: 0, to: 'i-1', epoch: 2 }, 't|0|i-1|2'],
    [{ kind: 'taken', shard: 17, to: 'host.example-7f3a9c_2', epoch: 2 ** 40 }, `t|17|host.example-7f3a9c_2|${2 ** 40}`],
  ],
} satisfies { [K in ControlLine['kind']]: Array<[Extract<ControlLine, { kind: K }>, string]> };
const all: Array<[ControlLine, string]> = Object.values(samples).flat();
const parsed = all.map(([line]) => line);

describe('control lines (protocol/control-lines.ts)', () => {
  it('formats both kinds as their lines and parses them back', () => {
    for (const [line, text] of all) {
      expect(formatControlLine(line)).toBe(text);
      expect(parseControlLine(text)).toEqual(line);
    }
  });

  it('leaves out unknown kinds and malformed lines', () => {
    const bad = ['', 'sync|1', 'x|1|i-1|1', 'h', 'h|1|i-1', 'h||i-1|1', 'h|1|i-1|', 'h|-1|i-1|1', 'h|1.5|i-1|1', 'h|1|i-1|2|x', 'h|1|i|1|1', 't|a|i-1|1', 'h|1|i-1|1\n'];
    for (const text of bad) expect(parseControlLine(text)).toBeUndefined();
  });
});

describe('control lines: Lua (router/lua/includes/control.lua) and TypeScript (protocol/control-lines.ts)', () => {
  const s = useRedis();

  /** The lines control.lua builds for these (given as JSON; shard and epoch numbers, as shards-1.lua passes them). */
  async function luaLines(list: ControlLine[]): Promise<string[]> {
    const fragment = loadScript(ROUTER_LUA, join('includes', 'control.lua'));
    const script = `${fragment}
local lines = {}
for i, c in ipairs(cjson.decode(ARGV[1])) do
  if c.kind == 'handOver' then lines[i] = controlHandOver(c.shard, c.to, c.epoch)
  elseif c.kind == 'taken' then lines[i] = controlTaken(c.shard, c.to, c.epoch)
  else return redis.error_reply('no builder for ' .. tostring(c.kind)) end
end
return lines`;
    return (await s.r.eval(script, 0, JSON.stringify(list))) as string[];
  }

  it('Lua builds both kinds byte for byte as formatControlLine, and parseControlLine reads them back', async () => {
    const lines = await luaLines(parsed);

    expect(lines).toEqual(all.map(([, text]) => text));
    expect(lines).toEqual(parsed.map(formatControlLine));
    expect(lines.map(parseControlLine)).toEqual(parsed);
  });

  it('shards-1.lua builds its lines with control.lua, included from router/lua/includes', () => {
    const scripts = readdirSync(ROUTER_LUA).filter((file) => file.endsWith('.lua'));
    const publishing = scripts.filter((file) => readFileSync(join(ROUTER_LUA, file), 'utf8').includes("'PUBLISH'"));

    expect(publishing).toEqual(['shards-1.lua']);
    const source = readFileSync(join(ROUTER_LUA, 'shards-1.lua'), 'utf8');
    expect(source).toContain('--- @include "control"');
    expect(source).not.toMatch(/'[ht]\|'/);
    const loaded = loadScript(ROUTER_LUA, 'shards-1.lua');
    expect(loaded).toContain('local function controlHandOver(');
    expect(loaded).not.toContain('--- @include');
  });
});
