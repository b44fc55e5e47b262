// Runs the built server (dist/main.js) as a child process, so tests can SIGKILL and
// restart it like a real deployment.
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { freePort, isRunning, keepAlive, sleep, stopChild, tail, trackChild } from './proc';

export interface TestServer {
  port: number;
  /** http://127.0.0.1:port */
  url: string;
  /** ws://127.0.0.1:port/ */
  wsUrl: string;
  /** Everything the server wrote to stdout and stderr, across restarts. */
  logs(): string;
  /** Resolves with the first log line of the current run matching re. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Send a signal (default SIGKILL) to the current run. */
  kill(signal?: NodeJS.Signals): void;
  /** Resolves when the current run has exited (at once if it already has). */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, wait for exit (10 s, then SIGKILL). */
  stop(): Promise<void>;
  /** Stop if running, start again with the same env and port, wait until ready. */
  restart(): Promise<void>;
}

export interface StartServerOptions {
  /** Wait until GET /health answers 200 (default true). */
  waitReady?: boolean;
}

const ROOT = path.resolve(__dirname, '../..');
const MAIN = path.join(ROOT, 'dist/main.js');
// Generous: a loaded 2-core machine starting several servers at once takes its time.
const READY_TIMEOUT_MS = 40_000;

type Exit = { code: number | null; signal: NodeJS.Signals | null };

export async function startServer(env: Record<string, string>, opts: StartServerOptions = {}): Promise<TestServer> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} not found: run \`npm run build\` first.`);
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const ready = opts.waitReady ?? true;
  if (ready && !Number.isInteger(port)) throw new Error(`PORT ${env.PORT} is not a port; pass waitReady: false to test a bad PORT.`);
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'debug',
    ...env,
    PORT: env.PORT ?? String(port), // verbatim, so tests can pass bad values on purpose
  };
  const url = `http://127.0.0.1:${port}`;

  let output = '';
  let child: ChildProcess;
  let runStart = 0; // offset in output where the current run's logs begin
  let exit: Promise<Exit>;

  const launch = (): void => {
    runStart = output.length;
    const c = spawn(process.execPath, [MAIN], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    trackChild(c);
    c.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    // 'close' comes after the output is fully read, so logs() is complete by then.
    exit = new Promise((resolve) => c.once('close', (code, signal) => resolve({ code, signal })));
  };

  const waitReady = async (): Promise<void> => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await healthOk(url))) {
      if (!isRunning(child)) {
        const { code, signal } = await keepAlive(exit);
        throw new Error(`Server exited before ready (code ${code}, signal ${signal}). Logs:\n${tail(output.slice(runStart))}`);
      }
      if (Date.now() > deadline) {
        await stopChild(child, 'SIGKILL', 1000);
        throw new Error(`Server not ready (GET /health 200) within ${READY_TIMEOUT_MS} ms. Logs:\n${tail(output.slice(runStart))}`);
      }
      await sleep(100);
    }
  };

  const stop = async (): Promise<void> => {
    await stopChild(child, 'SIGTERM', 10_000);
    await keepAlive(exit);
  };

  launch();
  if (ready) await waitReady();

  return {
    port,
    url,
    wsUrl: `ws://127.0.0.1:${port}/`,
    logs: () => output,
    async waitForLog(re, timeoutMs = 5000) {
      const once = new RegExp(re.source, re.flags.replace(/[gy]/g, '')); // no lastIndex state
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = output
          .slice(runStart)
          .split('\n')
          .find((l) => once.test(l));
        if (line !== undefined) return line;
        if (!isRunning(child)) {
          const { code, signal } = await keepAlive(exit); // all output is in by then: look once more
          const last = output
            .slice(runStart)
            .split('\n')
            .find((l) => once.test(l));
          if (last !== undefined) return last;
          throw new Error(`Server exited (code ${code}, signal ${signal}) with no log line matching ${re}. Logs:\n${tail(output.slice(runStart))}`);
        }
        if (Date.now() > deadline) {
          throw new Error(`No server log line matching ${re} within ${timeoutMs} ms. Logs:\n${tail(output.slice(runStart))}`);
        }
        await sleep(20);
      }
    },
    kill(signal = 'SIGKILL') {
      child.kill(signal);
    },
    exited: () => keepAlive(exit),
    stop,
    async restart() {
      await stop();
      launch();
      await waitReady();
    },
  };
}

function healthOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(`${url}/health`, { timeout: 1000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}
