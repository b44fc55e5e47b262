// The one redis-server spawner, shared by redis.ts (startRedis), cluster.ts and sentinel.ts:
// one redis-server child process (a test's Redis, cluster node, replica or sentinel) in its own
// temp dir that tests can SIGKILL and start again on the same port; one-shot commands; waitFor
// options that show the nodes' logs on a timeout.
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { freePort, isRunning, sleep, stopChild, tail, trackChild, trackDir, untrackDir, waitExit } from './proc';
import type { TestTls } from './tls';
import { within, type WaitOptions } from './wait';

/** How a node is reached: its password (requirepass) and, with tls, TLS only (its port is the TLS port). */
export interface Secure {
  password?: string;
  tls?: TestTls;
}

/** A node's port, or its port and how it is reached. */
export type Target = number | { port: number; secure?: Secure };

/**
 * redis-server arguments to listen on port: plain, or with secure.tls TLS only on that port
 * (clients' certificates not asked for); secure.password is requirepass, and masterauth for
 * a replica. The cluster bus and replication use TLS when the listener does (tls-cluster,
 * tls-replication): harmless where unused.
 */
export function listenArgs(port: number, secure?: Secure): string[] {
  const args = secure?.tls
    ? [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--tls-cert-file',
        secure.tls.certFile,
        '--tls-key-file',
        secure.tls.keyFile,
        '--tls-ca-cert-file',
        secure.tls.caFile,
        '--tls-auth-clients',
        'no',
        '--tls-replication',
        'yes',
        '--tls-cluster',
        'yes',
      ]
    : ['--port', String(port)];
  if (secure?.password) args.push('--requirepass', secure.password, '--masterauth', secure.password);
  return args;
}

/**
 * A data node of a Cluster or a Sentinel set on 127.0.0.1: listenArgs, its dir, no
 * persistence, and replicas that sync at once (not after the default 5 s wait for others).
 */
export function dataNodeArgs(port: number, dir: string, secure?: Secure): string[] {
  return [
    ...listenArgs(port, secure),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    // Spawn arguments are not parsed by a shell: '' is the empty value `--save ""` means.
    '--save',
    '',
    '--appendonly',
    'no',
    '--protected-mode',
    'no',
    '--daemonize',
    'no',
    '--repl-diskless-sync-delay',
    '0',
  ];
}

export interface HostPort {
  host: string;
  port: number;
}

export interface RedisNode {
  readonly label: string;
  readonly port: number;
  readonly dir: string;
  /** Everything it wrote, across restarts. */
  output(): string;
  running(): boolean;
  /** Start again with the same arguments (plus extraArgs); resolves once PING answers. */
  start(extraArgs?: string[]): Promise<void>;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Send a signal (SIGSTOP: it hangs with its sockets open; SIGCONT: it goes on). */
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM (Redis's graceful shutdown), SIGKILL after NodeSpec.stopGraceMs. */
  stop(): Promise<void>;
  /** stop (a stopped node is sent SIGCONT first) + remove the dir. */
  remove(): Promise<void>;
}

export interface NodeSpec {
  /** Names the node in errors, e.g. 'cluster node'. */
  label: string;
  /** redis-server arguments for this port and dir (may write files into dir). */
  args(port: number, dir: string): string[] | Promise<string[]>;
  /** Defaults to freePort(). */
  pickPort?: () => Promise<number>;
  /** How the harness reaches it (its PING, ask()). */
  secure?: Secure;
  /** How long stop() and remove() wait after SIGTERM before SIGKILL (default 5000 ms). */
  stopGraceMs?: number;
}

const READY_TIMEOUT_MS = 10_000;
export const BIN = (): string => process.env.REDIS_SERVER_BIN || 'redis-server';
export const CLI_BIN = (): string => process.env.REDIS_CLI_BIN || 'redis-cli';

export async function spawnNode(spec: NodeSpec): Promise<RedisNode> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rm-redis-'));
  trackDir(dir);
  let child: ChildProcess | undefined;
  let output = '';
  let port = 0;
  let args: string[] = [];
  const name = (): string => `${spec.label} ${port}`;

  const launch = async (extra: string[]): Promise<void> => {
    const runStart = output.length;
    const c = spawn(BIN(), [...args, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    trackChild(c);
    let spawnError: Error | undefined;
    c.once('error', (err) => (spawnError = err));
    c.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (spawnError) throw new Error(`Could not run ${BIN()} (set REDIS_SERVER_BIN?): ${spawnError.message}`);
      if (!isRunning(c)) {
        await waitExit(c, 100); // let the last output arrive
        throw new Error(`${name()} exited (code ${c.exitCode}):\n${tail(output.slice(runStart))}`);
      }
      if ((await ask({ port, secure: spec.secure }, 'PING').catch(() => '')) === 'PONG') return;
      if (Date.now() > deadline) {
        await stopChild(c, 'SIGKILL', 1000);
        throw new Error(`${name()} did not answer PING within ${READY_TIMEOUT_MS} ms:\n${tail(output.slice(runStart))}`);
      }
      await sleep(50);
    }
  };

  const graceMs = spec.stopGraceMs ?? 5000;
  const remove = async (): Promise<void> => {
    if (isRunning(child)) child!.kill('SIGCONT'); // a stopped one would not hear SIGTERM
    if (child) await stopChild(child, 'SIGTERM', graceMs);
    await rm(dir, { recursive: true, force: true });
    untrackDir(dir);
  };

  // The free port may be taken between picking it and redis binding it: retry.
  for (let attempt = 1; ; attempt++) {
    port = await (spec.pickPort ?? freePort)();
    args = await spec.args(port, dir);
    try {
      await launch([]);
      break;
    } catch (err) {
      if (attempt >= 3 || !/already in use/i.test(output)) {
        await remove();
        throw err;
      }
    }
  }

  return {
    label: spec.label,
    port,
    dir,
    output: () => output,
    running: () => isRunning(child),
    async start(extraArgs = []) {
      if (isRunning(child)) throw new Error(`${name()} is already running`);
      await launch(extraArgs);
    },
    async kill() {
      if (child) await stopChild(child, 'SIGKILL', 5000);
    },
    signal(sig) {
      child?.kill(sig);
    },
    async stop() {
      if (child) await stopChild(child, 'SIGTERM', graceMs);
    },
    remove,
  };
}

/** One command on a fresh connection that fails fast instead of retrying. */
export async function ask(target: Target, command: string, ...args: (string | number)[]): Promise<unknown> {
  const { port, secure } = typeof target === 'number' ? { port: target, secure: undefined } : target;
  const c = new Redis({
    host: '127.0.0.1',
    port,
    password: secure?.password,
    tls: secure?.tls ? { ca: secure.tls.ca } : undefined,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    connectTimeout: 1000,
  });
  c.on('error', () => undefined);
  try {
    await c.connect();
    // Not ioredis's commandTimeout: its timer outlives a rejected command and keeps jest up.
    return await within(c.call(command, ...args), 2000, `${command} on port ${port}`);
  } finally {
    // disconnect() on an ended client (connect refused) would leave a 2 s timer behind.
    if (c.status !== 'end') c.disconnect();
  }
}

/** waitFor options for a wait on these nodes: a check every 100 ms; past the deadline, the tail of each node's output. */
export function showing(nodes: RedisNode[]): WaitOptions {
  return { intervalMs: 100, detail: () => logsOf(nodes) };
}

export function logsOf(nodes: RedisNode[]): string {
  return nodes.map((n) => `--- ${n.label} ${n.port}${n.running() ? '' : ' (down)'} ---\n${tail(n.output(), 1500)}`).join('\n');
}
