/**
 * The container files, checked without a Docker engine (none here, and hadolint is
 * not packaged by Debian): the Dockerfile and docker-compose.yml are parsed and
 * every reference they make is checked against the repository; the runtime stage's
 * dependency install is rehearsed with npm (registry or warm cache) and the built
 * server started from it; the HEALTHCHECK command itself is run against it.
 * What this cannot show: that `docker build` and `docker compose up` succeed.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { ENVIRONMENT_KEYS, Environment, validateEnvironment } from '../src/config/environment';
import { freePort, trackChild, trackDir, untrackDir } from './support/proc';
import { startRedis, type TestRedis } from './support/redis';
import { within } from './support/wait';

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

/** Whether .dockerignore leaves `file` in the build context (last matching pattern wins, `!` re-includes). */
function inContext(file: string, patterns: string[]): boolean {
  const regex = (glob: string) =>
    new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\u0000/g, '.*')}(/.*)?$`);
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
    it('builds in one stage and runs node 20 in another, as a user that is not root', () => {
      expect(stages.length).toBeGreaterThanOrEqual(2);
      expect(build.name).toBe('build');
      expect(runtime.from).toMatch(/^node:20-(slim|alpine)/);
      expect(build.steps.map((s) => s.args)).toEqual(expect.arrayContaining([expect.stringMatching(/^npm ci\b/), 'npm run build']));
      expect(steps('RUN').map((s) => s.args).join(' ')).toMatch(/npm ci --omit=dev/);
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
      for (const kept of ['node_modules', 'dist', '.git', 'config/.env']) expect([kept, inContext(kept, ignore)]).toEqual([kept, false]);
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
        }
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

    it('installs Nest with the production dependencies, and the server runs and passes the HEALTHCHECK command', async () => {
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
    }, 6 * 60_000);
  });
});
