import type { Cluster, Redis, Result } from 'ioredis';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    rmLease(key: string, token: string, ms: number, release: '' | 'release'): Result<number, Context>;
  }
}

/** One Redis, or a Redis Cluster: both run the same commands and scripts. */
export type RedisClient = Redis | Cluster;

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

/**
 * Registers Lua scripts on a client once, as ioredis custom commands named
 * `rm<Name>`. A file `name-N.lua` takes N keys; a file without `-N` takes a
 * variable number of keys, passed as the first argument of the command.
 * ioredis sends EVALSHA and falls back to EVAL if Redis forgot the script.
 */
export function defineScripts(redis: RedisClient, dir: string, files: string[]): void {
  for (const file of files) {
    const [, name, keys] = /^([a-z]+)(?:-(\d+))?\.lua$/.exec(basename(file)) ?? [];
    if (!name) throw new Error(`Lua script file name must be name-<keys>.lua: ${file}`);
    const command = `rm${name[0].toUpperCase()}${name.slice(1)}`;
    if (typeof (redis as unknown as Record<string, unknown>)[command] === 'function') continue;
    redis.defineCommand(command, {
      lua: loadScript(dir, file),
      numberOfKeys: keys === undefined ? undefined : Number(keys),
    });
  }
}

/** `rmLease` (lua/lease-1.lua): one holder at a time of a job (reading the inbox, reaping a dead instance). */
export function defineLease(redis: RedisClient): void {
  defineScripts(redis, join(__dirname, 'lua'), ['lease-1.lua']);
}
