/**
 * The container files. Everywhere (hadolint is not packaged by Debian): the Dockerfile
 * and docker-compose.yml are parsed and every reference they make is checked against
 * the repository; the runtime stage's dependency install is rehearsed with npm and the
 * built server started from it; the HEALTHCHECK command itself is run against it.
 * Where a Docker engine answers `docker info` (else skipped, saying so): the image is
 * built and run against a Redis (/health, HEALTHCHECK healthy, a message delivered,
 * `docker stop` exits 0 with the owed message back in its queue), and the compose
 * stack's two instances deliver a message posted to one to a client of the other
 * (CONTAINER_E2E=0 skips that part: the first build takes minutes).
 */
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { ENVIRONMENT_KEYS, Environment, validateEnvironment } from '../src/config/environment';
import { freePort, trackChild, trackDir, untrackDir } from './support/proc';
import { uniqueId } from './support/ids';
import { entryPayload, owedCount } from './support/queue-entries';
import { startRedis, type TestRedis } from './support/redis';
import { waitFor, within } from './support/wait';
import { TestClient } from './support/ws-client';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions per stage (comments dropped, continuation lines joined). */
function parseDockerfile(text: string): Array<{ from: string; name?: string; steps: Instruction[] }> {
  const joined = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ');
  const stages: Array<{ from: string; name?: string; steps: Instruction[] }> = [];
  for (const line of joined.split('\n')) {
    const match = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const op = match[1].toUpperCase();
    const args = match[2].trim();
    if (op === 'FROM') {
      const [from, , name] = args.split(/\s+/);
      stages.push({ from, name, steps: [] });
    } else {
      stages[stages.length - 1].steps.push({ op, args });
    }
  }
  return stages;
}

/** Whether .dockerignore leaves `file` in the build context (last matching pattern wins, `!` re-includes; a leading double star matches any depth, none included). */
function inContext(file: string, patterns: string[]): boolean {
  const regex = (glob: string) =>
    new RegExp(
      `^${glob
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*\//g, '\u0001')
        .replace(/\*\*/g, '\u0000')
        .replace(/\*/g, '[^/]*')
        .replace(/\u0001/g, '(?:.*/)?')
        .replace(/\u0000/g, '.*')}(/.*)?$`,
    );
  let included = true;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    if (regex(negated ? raw.slice(1) : raw).test(file)) included = negated;
  }
  return included;
}

/** The exec-form JSON array after CMD (or HEALTHCHECK ... CMD). */
const execForm = (args: string): string[] => JSON.parse(args.slice(args.indexOf('[')));

describe('container files', () => {
  const stages = parseDockerfile(read('Dockerfile'));
  const build = stages[0];
  const runtime = stages[stages.length - 1];
  const steps = (op: string) => runtime.steps.filter((s) => s.op === op);
  const ignore = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const compose = parse(read('docker-compose.yml'), { merge: true });
  const services: Record<string, any> = compose.services;
  const messengers = Object.entries(services).filter(([, s]) => s.build !== undefined);

  describe('Dockerfile', () => {
    it('builds in one stage and runs Node 24 (the current LTS) in another, as a user that is not root', () => {
      expect(stages.length).toBeGreaterThanOrEqual(2);
      expect(build.name).toBe('build');
      expect(build.from).toBe('node:24-slim');
      expect(runtime.from).toBe('node:24-slim');
      expect(build.steps.map((s) => s.args)).toEqual(expect.arrayContaining([expect.stringMatching(/^npm ci\b/), 'npm run build']));
      // `npm run build` starts with the client SDK workspace: its package.json before npm ci, its sources before the build.
      const copies = build.steps.map((s) => `${s.op} ${s.args}`);
      expect(copies.indexOf('COPY client/package.json ./client/')).toBeLessThan(copies.findIndex((c) => c.startsWith('RUN npm ci')));
      expect(copies.indexOf('COPY client ./client')).toBeGreaterThan(-1);
      expect(copies.indexOf('COPY client ./client')).toBeLessThan(copies.indexOf('RUN npm run build'));
      expect(
        steps('RUN')
          .map((s) => s.args)
          .join(' '),
      ).toMatch(/npm ci --omit=dev/);
      const user = steps('USER').pop()?.args;
      expect(user).toBeDefined();
      expect(user).not.toMatch(/^(root|0)(:|$)/);
    });

    it('starts dist/main.js in exec form, a file the build writes', () => {
      expect(execForm(steps('CMD').pop()!.args)).toEqual(['node', '--max-semi-space-size=32', 'dist/main.js']); // as npm start runs it
      // The build stage compiles to dist/ (tsconfig outDir) and the runtime stage copies exactly that.
      expect(JSON.parse(read('tsconfig.json')).compilerOptions.outDir).toBe('./dist');
      expect(existsSync(path.join(ROOT, 'dist/main.js'))).toBe(true);
      expect(steps('COPY').map((s) => s.args)).toContain('--from=build /app/dist ./dist');
      expect(build.steps.find((s) => s.op === 'WORKDIR')?.args).toBe('/app');
    });

    it('copies only files that exist and that .dockerignore keeps in the context', () => {
      const sources = stages
        .flatMap((stage) => stage.steps)
        .filter((s) => s.op === 'COPY' && !s.args.startsWith('--from'))
        .flatMap((s) => s.args.split(/\s+/).slice(0, -1));
      expect(sources.length).toBeGreaterThan(0);
      for (const source of sources) {
        expect([source, existsSync(path.join(ROOT, source))]).toEqual([source, true]);
        expect([source, inContext(source.replace(/^\.\//, ''), ignore)]).toEqual([source, true]);
      }
      for (const kept of ['node_modules', 'dist', '.git', 'config/.env', 'client/dist']) expect([kept, inContext(kept, ignore)]).toEqual([kept, false]);
      for (const needed of ['client/package.json', 'client/src/index.ts', 'client/tsconfig.build.json']) {
        expect([needed, inContext(needed, ignore)]).toEqual([needed, true]);
      }
    });

    it('exposes the default PORT and checks /health/live with node (no curl)', () => {
      expect(steps('EXPOSE').map((s) => Number(s.args))).toEqual([new Environment().PORT]);
      const check = steps('HEALTHCHECK').pop()!.args;
      const command = execForm(check);
      expect(command[0]).toBe('node');
      expect(command.join(' ')).toContain('/health/live');
      expect(command.join(' ')).not.toMatch(/curl|wget/);
    });
  });

  describe('docker-compose.yml', () => {
    it('runs Redis with an append-only file on a named volume', () => {
      const redis = services.redis;
      expect(redis.image).toMatch(/^redis:/);
      expect(redis.command.join(' ')).toContain('--appendonly yes');
      const [volume, mount] = redis.volumes[0].split(':');
      expect(mount).toBe('/data');
      expect(Object.keys(compose.volumes)).toContain(volume);
      expect(redis.healthcheck.test).toBeDefined();
    });

    it('builds two or more RedMessenger replicas from this Dockerfile, with distinct INSTANCE_IDs, one with DEMO on', () => {
      expect(messengers.length).toBeGreaterThanOrEqual(2);
      for (const [, service] of messengers) {
        const context = typeof service.build === 'string' ? service.build : service.build.context;
        expect(existsSync(path.join(ROOT, context, 'Dockerfile'))).toBe(true);
      }
      const ids = messengers.map(([, s]) => s.environment.INSTANCE_ID);
      expect(new Set(ids).size).toBe(messengers.length);
      expect(messengers.some(([, s]) => s.environment.DEMO === 'true')).toBe(true);
    });

    it('refers only to services that exist, waits for a healthy Redis, and checks every service', () => {
      for (const [name, service] of Object.entries(services)) {
        expect([name, service.image !== undefined || service.build !== undefined]).toEqual([name, true]);
        expect([name, service.healthcheck?.test?.length > 0]).toEqual([name, true]);
        for (const [dependency, how] of Object.entries<any>(service.depends_on ?? {})) {
          expect(Object.keys(services)).toContain(dependency);
          if (how.condition === 'service_healthy') expect(services[dependency].healthcheck).toBeDefined();
        }
      }
      for (const [name, service] of messengers) {
        expect([name, new URL(service.environment.REDIS_URL).hostname]).toEqual([name, 'redis']);
        expect(service.depends_on.redis.condition).toBe('service_healthy');
        expect(service.healthcheck.test.join(' ')).toContain('/health/live');
      }
    });

    it('sets only real settings, with values the server accepts, and publishes the ports it listens on', () => {
      for (const [name, service] of messengers) {
        const env: Record<string, string> = service.environment;
        const unknown = Object.keys(env).filter((key) => !(ENVIRONMENT_KEYS as string[]).includes(key));
        expect([name, unknown]).toEqual([name, []]);
        const settings = validateEnvironment({ NODE_ENV: 'production', ...env }); // the image's NODE_ENV unless the service sets its own
        const listening = [settings.PORT, settings.INTERNAL_PORT].filter((p) => p !== undefined).map(String);
        for (const mapping of service.ports as string[]) {
          expect([name, mapping, listening.includes(mapping.split(':').pop()!)]).toEqual([name, mapping, true]);
          // AUTH_MODE=none and the demo: a trial stack, reachable from this machine only.
          expect([name, mapping.split(':')[0]]).toEqual([name, '127.0.0.1']);
        }
        expect([name, env.AUTH_MODE, env.DEMO, typeof env.PUBLISH_API_KEYS]).toEqual([name, 'none', 'true', 'string']);
        expect(listening).toContain(steps('EXPOSE')[0].args);
      }
    });
  });

  describe("the runtime stage's install, rehearsed without Docker", () => {
    let work: string;
    let redis: TestRedis;

    beforeAll(async () => {
      work = await mkdtemp(path.join(os.tmpdir(), 'rm-runtime-'));
      trackDir(work);
      redis = await startRedis();
    });

    afterAll(async () => {
      await redis?.close();
      await rm(work, { recursive: true, force: true });
      untrackDir(work);
    });

    it(
      'installs Nest with the production dependencies, and the server runs and passes the HEALTHCHECK command',
      async () => {
        // What the runtime stage does: package files, the rewrite script, npm ci --omit=dev, dist/.
        for (const file of ['package.json', 'package-lock.json', 'scripts/runtime-package.js', 'dist']) {
          cpSync(path.join(ROOT, file), path.join(work, file), { recursive: true });
        }
        const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
        await run(process.execPath, ['scripts/runtime-package.js'], { cwd: work });
        await run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund', '--ignore-scripts', '--prefer-offline'], {
          cwd: work,
          env,
          timeout: 5 * 60_000,
        });
        const pkg = JSON.parse(readFileSync(path.join(work, 'package.json'), 'utf8'));
        const lock = JSON.parse(read('package-lock.json'));
        for (const name of Object.keys(JSON.parse(read('package.json')).peerDependencies)) {
          const installed = JSON.parse(readFileSync(path.join(work, 'node_modules', name, 'package.json'), 'utf8')).version;
          expect([name, installed]).toEqual([name, lock.packages[`node_modules/${name}`].version]);
          expect([name, pkg.dependencies[name]]).toEqual([name, installed]);
        }
        expect(existsSync(path.join(work, 'node_modules/jest'))).toBe(false);
        expect(existsSync(path.join(work, 'node_modules/@nestjs/cli'))).toBe(false);

        // The server from that install (startServer runs ROOT's dist/main.js, so spawn this one directly).
        const port = await freePort();
        const server = execFile(process.execPath, ['dist/main.js'], {
          cwd: work,
          env: { ...env, NODE_ENV: 'production', AUTH_MODE: 'none', REDIS_URL: redis.url, PORT: String(port), LOG_LEVEL: 'warn' },
        });
        trackChild(server);
        let output = '';
        server.stdout?.on('data', (d) => (output += d));
        server.stderr?.on('data', (d) => (output += d));
        const exited = new Promise((resolve) => server.once('close', resolve));
        try {
          const [, , code] = execForm(steps('HEALTHCHECK').pop()!.args);
          const healthcheck = () =>
            run(process.execPath, ['-e', code], { env: { ...env, PORT: String(port) }, timeout: 10_000 }).then(
              () => 0,
              (error: { code?: number }) => error.code ?? -1,
            );
          const deadline = Date.now() + 20_000;
          while ((await healthcheck()) !== 0) {
            if (server.exitCode !== null) throw new Error(`The server exited early:\n${output}`);
            if (Date.now() > deadline) throw new Error(`HEALTHCHECK did not pass within 20 s:\n${output}`);
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
          const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5000) });
          expect(res.status).toBe(200);
        } finally {
          server.kill('SIGTERM');
          await within(exited, 10_000, 'the server to exit on SIGTERM').catch(() => server.kill('SIGKILL'));
        }

        // The same command fails where nothing answers.
        const [, , code] = execForm(steps('HEALTHCHECK').pop()!.args);
        const refused = await run(process.execPath, ['-e', code], { env: { ...env, PORT: String(await freePort()) }, timeout: 10_000 }).then(
          () => 0,
          (error: { code?: number }) => error.code,
        );
        expect(refused).toBe(1);
      },
      6 * 60_000,
    );
  });
});

// ---------------------------------------------------------------------------
// With a Docker engine: the image and the compose stack, for real.

/** Why the engine tests cannot run here, or undefined when `docker info` answers. */
function noEngine(): string | undefined {
  try {
    execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 10_000, stdio: 'pipe' });
    return undefined;
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: Buffer };
    return e.code === 'ENOENT'
      ? 'no docker command'
      : `no Docker engine answers \`docker info\` (${String(e.stderr ?? e.message)
          .trim()
          .split('\n')
          .pop()})`;
  }
}

/** The compose command: `docker compose` (v2) or `docker-compose` (v1), or why neither. */
function composeCommand(): string[] | string {
  for (const command of [['docker', 'compose'], ['docker-compose']]) {
    try {
      execFileSync(command[0], [...command.slice(1), 'version'], { timeout: 10_000, stdio: 'pipe' });
      return command;
    } catch {
      // try the next
    }
  }
  return 'neither `docker compose` nor `docker-compose` runs';
}

const engineMissing = process.env.CONTAINER_E2E === '0' ? 'CONTAINER_E2E=0' : noEngine();
if (engineMissing) console.info(`container e2e with Docker: skipped, ${engineMissing}; the files' checks above still ran`);
const withEngine = engineMissing ? describe.skip : describe;

/** A docker (or compose) command's stdout; its stderr in the error. */
async function docker(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; command?: string[] } = {}): Promise<string> {
  const [file, ...pre] = opts.command ?? ['docker'];
  try {
    const { stdout } = await run(file, [...pre, ...args], {
      cwd: ROOT,
      env: opts.env ?? process.env,
      timeout: opts.timeoutMs ?? 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout.trim();
  } catch (error) {
    const e = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`${file} ${[...pre, ...args].join(' ')} failed: ${e.message}\n${tail(`${e.stdout ?? ''}\n${e.stderr ?? ''}`)}`);
  }
}

const health = (containerId: string) => docker(['inspect', '-f', '{{if .State.Health}}{{.State.Health.Status}}{{end}}', containerId]);
const tail = (text: string, max = 3000) => (text.length > max ? `…${text.slice(-max)}` : text);
const BUILD_TIMEOUT_MS = 20 * 60_000;

withEngine('the image, built and run by a Docker engine', () => {
  const tag = 'redmessenger:e2e';
  const name = `rm-e2e-${process.pid}`;
  let redis: TestRedis;

  beforeAll(async () => {
    const started = Date.now();
    await docker(['build', '-t', tag, '.'], { timeoutMs: BUILD_TIMEOUT_MS });
    const size = Number(await docker(['image', 'inspect', '-f', '{{.Size}}', tag]));
    console.info(`docker build: ${((Date.now() - started) / 1000).toFixed(0)} s; image ${(size / 1e6).toFixed(0)} MB`);
    redis = await startRedis();
  }, BUILD_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    await docker(['rm', '-f', name]).catch(() => undefined);
    await redis?.close();
  });

  it(
    'runs Node 24 as user node, becomes healthy, delivers, and on docker stop returns the owed message and exits 0',
    async () => {
      const port = await freePort();
      // The host's network: the container reaches the test's Redis on 127.0.0.1 (or the mapped port of a container Redis).
      await docker(['run', '-d', '--name', name, '--network', 'host', '-e', `REDIS_URL=${redis.url}`, '-e', 'AUTH_MODE=none', '-e', `PORT=${port}`, '-e', `INSTANCE_ID=${name}`, tag]);
      expect(await docker(['exec', name, 'node', '-p', 'process.version'])).toMatch(/^v24\./);
      expect(await docker(['exec', name, 'id', '-un'])).toBe('node');

      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.status === 200, 60_000, 'GET /health to answer 200');
      // The first HEALTHCHECK runs 10 s after the start (--interval).
      await waitFor(async () => (await health(name)) === 'healthy', 60_000, 'the HEALTHCHECK to report healthy');

      const user = uniqueId('ctr');
      const client = await TestClient.connect(`ws://127.0.0.1:${port}/`);
      await client.identify(user);
      const publisher = redis.client();
      await publisher.publish(`rm.users.${user}`, 'hello from outside');
      const [message] = await client.messages(1, 10_000);
      expect(message.data.payload).toBe('hello from outside');
      expect(await owedCount(publisher, user)).toBe(1); // delivered, not acked: owed

      const stopping = Date.now();
      await docker(['stop', '-t', '15', name], { timeoutMs: 30_000 });
      const stopSeconds = (Date.now() - stopping) / 1000;
      console.info(`docker stop: ${stopSeconds.toFixed(1)} s`);
      expect((await client.closed(5000)).code).toBe(1001);
      expect(await docker(['inspect', '-f', '{{.State.ExitCode}}', name])).toBe('0');
      expect(stopSeconds).toBeLessThan(15); // within the grace period: not killed
      const queued = await publisher.lrange(`rm:users:${user}:messages`, 0, -1);
      expect(queued.map(entryPayload)).toEqual(['hello from outside']);
      expect(await owedCount(publisher, user)).toBe(0);

      // NODE_ENV=production: JSON lines by default, no colour codes.
      const { stdout, stderr } = await run('docker', ['logs', name], { maxBuffer: 16 * 1024 * 1024 });
      const lines = `${stdout}${stderr}`.split('\n').filter((line) => line !== '');
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect([line, typeof JSON.parse(line).level]).toEqual([line, 'string']);
      expect(`${stdout}${stderr}`).not.toContain('\u001b[');
    },
    5 * 60_000,
  );
});

withEngine('docker-compose.yml, brought up by a Docker engine', () => {
  const compose = composeCommand();
  const project = `rme2e${process.pid}`;
  const stack = parse(read('docker-compose.yml'), { merge: true });
  const key: string = stack.services['redmessenger-1'].environment.PUBLISH_API_KEYS.split(',')[0];
  let env: NodeJS.ProcessEnv;
  let ports: Record<string, number>;
  const composeRun = (args: string[], timeoutMs?: number) => docker(['-p', project, ...args], { command: compose as string[], env, timeoutMs });

  beforeAll(async () => {
    if (typeof compose === 'string') return;
    ports = { RM_PORT_1: await freePort(), RM_PORT_2: await freePort(), RM_INTERNAL_PORT_1: await freePort(), RM_INTERNAL_PORT_2: await freePort() };
    env = { ...process.env, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])) };
    const started = Date.now();
    await composeRun(['up', '-d', '--build'], BUILD_TIMEOUT_MS);
    console.info(`${compose.join(' ')} up -d --build: ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }, BUILD_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    if (typeof compose !== 'string') await composeRun(['down', '-v', '--rmi', 'local'], 5 * 60_000).catch((e) => console.warn(String(e)));
  }, 6 * 60_000);

  it(
    'runs Redis and two healthy instances on 127.0.0.1; a message POSTed to instance 1 reaches a client of instance 2',
    async () => {
      if (typeof compose === 'string') {
        console.info(`compose e2e: skipped, ${compose}`);
        return;
      }
      const ids = { 1: await composeRun(['ps', '-q', 'redmessenger-1']), 2: await composeRun(['ps', '-q', 'redmessenger-2']) };
      for (const id of Object.values(ids)) {
        await waitFor(async () => (await health(id)) === 'healthy', 90_000, `container ${id} to be healthy`);
        const bindings = JSON.parse(await docker(['inspect', '-f', '{{json .HostConfig.PortBindings}}', id]));
        const hosts = Object.values<Array<{ HostIp: string }>>(bindings)
          .flat()
          .map((b) => b.HostIp);
        expect(hosts).toEqual(['127.0.0.1', '127.0.0.1']);
      }
      const one = `http://127.0.0.1:${ports.RM_PORT_1}`;
      const two = `http://127.0.0.1:${ports.RM_PORT_2}`;
      for (const url of [one, two]) expect((await fetch(`${url}/health`)).status).toBe(200);

      const user = uniqueId('cmp');
      const client = await TestClient.connect(`ws://127.0.0.1:${ports.RM_PORT_2}/`, { autoAck: true });
      await client.identify(user);
      const res = await fetch(`${one}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ to: user, payload: 'from instance 1' }),
        signal: AbortSignal.timeout(10_000),
      });
      expect(res.status).toBe(202);
      const [message] = await client.messages(1, 15_000);
      expect(message.data.payload).toBe('from instance 1');
      await client.close();
    },
    5 * 60_000,
  );
});
