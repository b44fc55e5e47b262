import type { Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

/**
 * Registers Lua scripts on a client once, as ioredis custom commands named
 * `rm<Name>`. A file `name-N.lua` takes N keys; a file without `-N` takes a
 * variable number of keys, passed as the first argument of the command.
 * ioredis sends EVALSHA and falls back to EVAL if Redis forgot the script.
 */
export function defineScripts(redis: Redis, dir: string, files: string[]): void {
  for (const file of files) {
    const [, name, keys] = /^([a-z]+)(?:-(\d+))?\.lua$/.exec(basename(file)) ?? [];
    if (!name) throw new Error(`Lua script file name must be name-<keys>.lua: ${file}`);
    const command = `rm${name[0].toUpperCase()}${name.slice(1)}`;
    if (typeof (redis as unknown as Record<string, unknown>)[command] === 'function') continue;
    redis.defineCommand(command, {
      lua: readFileSync(join(dir, file), 'utf8'),
      numberOfKeys: keys === undefined ? undefined : Number(keys),
    });
  }
}
