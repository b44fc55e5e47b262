import type { Cluster, Redis, Result } from 'ioredis';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

type Args = (string | number)[];

/** Every Lua script of RedMessenger, as the `rm<Name>` command defineScripts registers (SCRIPTS below). */
declare module 'ioredis' {
  interface RedisCommander<Context> {
    // src/queue/lua: one user's keys (route, acks: the users of one slot).
    rmRoute(numKeys: number, ...args: Args): Result<[string, ...Array<number | string>], Context>;
    /** route.lua again, never auto-pipelined (ROUTE_DIRECT): for a route of several calls. */
    rmRouteDirect(numKeys: number, ...args: Args): Result<[string, ...Array<number | string>], Context>;
    rmAttach(...args: Args): Result<[number, number, number, string[], number, number, number, number, string, number, Array<number | string>], Context>;
    rmSweep(...args: Args): Result<[number, number, number], Context>;
    rmDetach(...args: Args): Result<[number, number, number, number, number, number], Context>;
    rmExpire(...args: Args): Result<[number, number, number], Context>;
    rmAck(...args: Args): Result<Array<number | string>, Context>;
    rmAcks(numKeys: number, ...args: Args): Result<Array<number | string | Array<number | string>>, Context>;
    rmRead(...args: Args): Result<Array<number | string>, Context>;
    rmUnread(...args: Args): Result<Array<number | string>, Context>;
    rmRetract(...args: Args): Result<string, Context>;
    rmVisibility(...args: Args): Result<[number, number], Context>;
    rmNotify(...args: Args): Result<[string, number, number, string, string, string, number], Context>;
    // src/router/lua: the route shard leases.
    rmShards(...args: Args): Result<number[], Context>;
    // src/redis/lua: one holder at a time of a job (reading the inbox, reaping a dead instance).
    rmLease(key: string, token: string, ms: number, release: '' | 'release'): Result<number, Context>;
  }
}

/** One Redis, or a Redis Cluster: both run the same commands and scripts. */
export type RedisClient = Redis | Cluster;

/** The script files, by folder (each beside the code that calls it). */
const SCRIPTS: ReadonlyArray<{ dir: string; files: readonly string[] }> = [
  {
    dir: join(__dirname, '..', 'queue', 'lua'),
    files: ['route.lua', 'attach-5.lua', 'detach-5.lua', 'ack-5.lua', 'acks.lua', 'read-5.lua', 'expire-5.lua', 'unread-5.lua', 'sweep-5.lua', 'retract-5.lua', 'visibility-5.lua', 'notify-5.lua'],
  },
  { dir: join(__dirname, '..', 'router', 'lua'), files: ['shards-1.lua'] },
  { dir: join(__dirname, 'lua'), files: ['lease-1.lua'] },
];

const INCLUDE = /^--- @include "([a-z-]+)"$/gm;

/**
 * A script's source with its `--- @include "name"` lines replaced by
 * `includes/name.lua` (once each), so shared Lua fragments live in one file.
 */
export function loadScript(dir: string, file: string, seen = new Set<string>()): string {
  return readFileSync(join(dir, file), 'utf8').replace(INCLUDE, (_line, name: string) => {
    if (seen.has(name)) return '';
    seen.add(name);
    return loadScript(dir, join('includes', `${name}.lua`), seen);
  });
}

/** The commands to define: read once per process. */
let commands: Array<{ command: string; lua: string; numberOfKeys?: number }> | undefined;

/**
 * route.lua under a second name that createRedis keeps out of auto-pipelining: the calls of a route
 * that takes several (a group message to many members) reach Redis one by one as they are made,
 * while a route of one call leaves with the other commands of its tick (QueueService.route).
 */
export const ROUTE_DIRECT = 'rmRouteDirect';

const scriptCommands = () =>
  (commands ??= SCRIPTS.flatMap(({ dir, files }) =>
    files.map((file) => {
      const [, name, keys] = /^([a-z]+)(?:-(\d+))?\.lua$/.exec(basename(file)) ?? [];
      if (!name) throw new Error(`Lua script file name must be name-<keys>.lua: ${file}`);
      return { command: `rm${name[0].toUpperCase()}${name.slice(1)}`, lua: loadScript(dir, file), numberOfKeys: keys === undefined ? undefined : Number(keys) };
    }),
  ).flatMap((script) => (script.command === 'rmRoute' ? [script, { ...script, command: ROUTE_DIRECT }] : [script])));

/** The scripts that take a variable number of keys (the key count is their first argument). */
export const variadicScripts = (): string[] =>
  scriptCommands()
    .filter(({ numberOfKeys }) => numberOfKeys === undefined)
    .map(({ command }) => command);

/**
 * Registers every Lua script on a client (ours, a host application's, or a duplicate), as
 * ioredis custom commands named `rm<Name>`; a client that has them already is left as it is.
 * A file `name-N.lua` takes N keys; a file without `-N` takes a variable number of keys,
 * passed as the first argument of the command. ioredis sends EVALSHA and falls back to EVAL
 * if Redis forgot the script. Every call is timed (MetricsService.timeRedis).
 */
export function defineScripts(redis: RedisClient): void {
  for (const { command, lua, numberOfKeys } of scriptCommands()) {
    if (typeof (redis as unknown as Record<string, unknown>)[command] === 'function') continue;
    redis.defineCommand(command, { lua, numberOfKeys });
  }
}
