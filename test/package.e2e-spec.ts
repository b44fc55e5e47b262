/**
 * The installable package: `npm pack` of this repository, installed into a fresh
 * Nest application that depends on the newest Nest 11 from the registry, runs
 * RedMessenger inside that application (plain CommonJS, no access to src/), on one
 * copy of Nest, against a real Redis, with a real WebSocket client.
 *
 * Needs the npm registry (or a warm npm cache: --prefer-offline) and `npm run
 * build` first (npm test does it); packs with --ignore-scripts so that no build
 * runs while other specs use dist/.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { uniqueId } from './support/ids';
import { freePort, isRunning, keepAlive, sleep, stopChild, tail, trackChild, trackDir, untrackDir } from './support/proc';
import { startRedis, type TestRedis } from './support/redis';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..');
const INSTALL_TIMEOUT_MS = 5 * 60_000;

/** The environment for child npm runs, without what an outer `npm test` exports (its npm_* settings would point npm back at this repository). */
const childEnv = (): NodeJS.ProcessEnv => Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));

/** The host application: what a team writes, in plain CommonJS. */
const HOST_MAIN = `'use strict';
require('reflect-metadata');
const { Controller, Get, Module } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { RedMessengerModule, useRedMessengerAdapter } = require('redmessenger');

// A route of the host's own, beside RedMessenger's.
class HelloController {
  hello() {
    return { hello: 'from the host' };
  }
}
Get()(HelloController.prototype, 'hello', Object.getOwnPropertyDescriptor(HelloController.prototype, 'hello'));
Controller('hello')(HelloController);

class HostModule {}
Module({
  imports: [RedMessengerModule.forRoot({ redisUrl: process.env.REDIS_URL, port: Number(process.env.PORT), instanceId: process.env.INSTANCE_ID })],
  controllers: [HelloController],
})(HostModule);

async function main() {
  const app = await NestFactory.create(HostModule, { logger: ['error', 'warn', 'log'] });
  useRedMessengerAdapter(app);
  app.enableShutdownHooks();
  await app.listen(Number(process.env.PORT), '127.0.0.1');
  console.log('host app listening');
}
main().catch((error) => {
  console.error(error);
  process.exit(1);
});
`;

/** Type-checks against the package's declarations, as a TypeScript host would. */
const HOST_TS = `import { Module } from '@nestjs/common';
import { RedMessengerModule, TokenVerifier, useRedMessengerAdapter, type MessengerOptions } from 'redmessenger';

class Verifier extends TokenVerifier {
  async verify(id: string, token?: string): Promise<boolean> {
    return token === id;
  }
}
const options: Partial<MessengerOptions> = { redisUrl: 'redis://127.0.0.1:6379', maxInflight: 10 };
@Module({ imports: [RedMessengerModule.forRoot({ ...options, tokenVerifier: Verifier })] })
export class HostModule {}
export const install: typeof useRedMessengerAdapter = useRedMessengerAdapter;
`;

describe('the npm package in a host Nest application', () => {
  let work: string;
  let appDir: string;
  let packed: { filename: string; files: Array<{ path: string }> };
  let redis: TestRedis;
  let publisher: Redis;
  let host: ChildProcess | undefined;
  let hostOutput = '';
  let hostUrl: string;

  beforeAll(async () => {
    if (!existsSync(path.join(ROOT, 'dist/index.js'))) throw new Error('dist/index.js not found: run `npm run build` first.');
    work = await mkdtemp(path.join(os.tmpdir(), 'rm-package-'));
    trackDir(work);
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], {
      cwd: ROOT,
      env: childEnv(),
      timeout: 120_000,
    });
    [packed] = JSON.parse(stdout);

    appDir = path.join(work, 'host-app');
    await run('mkdir', [appDir]);
    const dependencies: Record<string, string> = {
      '@nestjs/common': '^11',
      '@nestjs/core': '^11',
      '@nestjs/platform-express': '^11',
      '@nestjs/platform-ws': '^11',
      '@nestjs/websockets': '^11',
      '@nestjs/terminus': '^11',
      '@nestjs/config': '*',
      'reflect-metadata': '*',
      rxjs: '*',
      redmessenger: `file:${path.join(work, packed.filename)}`,
    };
    await writeFile(path.join(appDir, 'package.json'), JSON.stringify({ name: 'host-app', private: true, dependencies }, null, 2));
    await writeFile(path.join(appDir, 'main.js'), HOST_MAIN);
    await writeFile(path.join(appDir, 'host.ts'), HOST_TS);
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts'], {
      cwd: appDir,
      env: childEnv(),
      timeout: INSTALL_TIMEOUT_MS,
      maxBuffer: 16 * 1024 * 1024,
    });

    redis = await startRedis();
    publisher = redis.client();
  }, INSTALL_TIMEOUT_MS + 120_000);

  afterAll(async () => {
    if (host) await stopChild(host, 'SIGTERM', 10_000);
    await redis?.close();
    if (work) {
      await rm(work, { recursive: true, force: true });
      untrackDir(work);
    }
  });

  it('packs the build with declarations and Lua scripts, and no specs, tests or sources', () => {
    const files = packed.files.map((f) => f.path);

    expect(files).toEqual(expect.arrayContaining(['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/main.js', 'dist/queue/lua/route.lua']));
    expect(files.filter((f) => /\.spec\.|^test\/|^src\/|^bench\/|^soak\/|tsbuildinfo/.test(f))).toEqual([]);
    const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(manifest).toMatchObject({ name: 'redmessenger', main: 'dist/index.js', types: 'dist/index.d.ts' });
    expect(manifest.private).toBeUndefined();
    for (const name of Object.keys(manifest.peerDependencies)) {
      expect([name, manifest.dependencies[name]]).toEqual([name, undefined]);
      expect([name, manifest.devDependencies[name]]).toEqual([name, expect.stringMatching(/^\d+\.\d+\.\d+$/)]);
    }
  });

  it("installs onto the host's single copy of Nest 11", async () => {
    expect(existsSync(path.join(appDir, 'node_modules/redmessenger/node_modules/@nestjs'))).toBe(false);
    const { stdout } = await run('npm', ['ls', '@nestjs/core', '--all', '--parseable'], { cwd: appDir, env: childEnv(), timeout: 60_000 });
    expect(stdout.trim().split('\n')).toEqual([path.join(appDir, 'node_modules/@nestjs/core')]);
    const core = JSON.parse(readFileSync(path.join(appDir, 'node_modules/@nestjs/core/package.json'), 'utf8'));
    expect(core.version).toMatch(/^11\./);
  });

  it("type-checks a TypeScript host against the package's declarations", async () => {
    const tsc = path.join(ROOT, 'node_modules/.bin/tsc');
    const args = ['--noEmit', '--strict', '--experimentalDecorators', '--emitDecoratorMetadata', '--skipLibCheck'];
    args.push('--target', 'ES2022', '--module', 'commonjs', '--moduleResolution', 'node10', '--types', 'node');
    args.push('--typeRoots', path.join(ROOT, 'node_modules/@types'), 'host.ts');
    await expect(run(tsc, args, { cwd: appDir, timeout: 120_000 }).then(() => 'ok')).resolves.toBe('ok');
  });

  it('runs RedMessenger in the host app: a queued and a live message reach a ws client', async () => {
    const port = await freePort();
    hostUrl = `http://127.0.0.1:${port}`;
    host = spawn(process.execPath, ['main.js'], {
      cwd: appDir,
      env: { ...childEnv(), REDIS_URL: redis.url, PORT: String(port), INSTANCE_ID: uniqueId('host-app') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    trackChild(host);
    const closed = new Promise((resolve) => host!.once('close', resolve)); // after the last output
    host.stdout?.on('data', (d: Buffer) => (hostOutput += d.toString()));
    host.stderr?.on('data', (d: Buffer) => (hostOutput += d.toString()));
    await waitForHealth(host, closed);

    const hello = await fetch(`${hostUrl}/hello`, { signal: AbortSignal.timeout(5000) });
    expect(await hello.json()).toEqual({ hello: 'from the host' });

    const id = uniqueId();
    await publisher.publish(`rm.users.${id}`, 'while you were away');
    await waitFor(async () => (await publisher.llen(`rm:users:${id}:messages`)) === 1, 10_000, 'the message to be queued');

    const client = await TestClient.connect(`ws://127.0.0.1:${port}/`, { autoAck: true });
    try {
      expect((await client.identify(id)).data).toMatchObject({ id, queued: 1 });
      expect((await client.messages(1))[0].data).toMatchObject({ channel: `rm.users.${id}`, payload: 'while you were away' });

      await publisher.publish(`rm.users.${id}`, 'live');
      expect((await client.messages(2))[1].data).toMatchObject({ channel: `rm.users.${id}`, payload: 'live' });
    } finally {
      client.terminate();
    }
  });

  /** Polls GET /health until 200 (20 s), failing at once if the host app exits. */
  async function waitForHealth(child: ChildProcess, closed: Promise<unknown>): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const status = await fetch(`${hostUrl}/health`, { signal: AbortSignal.timeout(1000) }).then(
        (res) => res.status,
        () => 0,
      );
      if (status === 200) return;
      if (!isRunning(child)) {
        await keepAlive(closed);
        throw new Error(`The host app exited before /health answered 200. Output:\n${tail(hostOutput)}`);
      }
      if (Date.now() > deadline) throw new Error(`The host app's /health did not answer 200 within 20 s. Output:\n${tail(hostOutput)}`);
      await sleep(100);
    }
  }
});
