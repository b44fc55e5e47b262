// Shared plumbing for the harness: free ports, child process tracking, exit waits.
import { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import net from 'node:net';
import vm from 'node:vm';

// Under jest, `process` is a per-test-file copy whose 'exit' and signal events never
// fire; the main vm context still holds the real one.
const realProcess: NodeJS.Process = vm.runInThisContext('process');

interface Registry {
  children: Set<ChildProcess>;
  dirs: Set<string>;
}

// One registry per OS process (not per test file), so handlers are installed once
// however many test files a jest worker runs.
const KEY = Symbol.for('redmessenger.test-support.registry');

function registry(): Registry {
  const holder = realProcess as unknown as Record<symbol, Registry | undefined>;
  const existing = holder[KEY];
  if (existing) return existing;
  const reg: Registry = { children: new Set(), dirs: new Set() };
  const cleanup = (): void => {
    for (const child of reg.children) child.kill('SIGKILL');
    for (const dir of reg.dirs) rmSync(dir, { recursive: true, force: true });
  };
  realProcess.on('exit', cleanup);
  // 'exit' does not run on a signal (jest sends SIGTERM to workers that hang): clean
  // up, then let the signal do what it would have done had we not listened.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanup();
      realProcess.removeListener(sig, onSignal);
      if (realProcess.listenerCount(sig) === 0) realProcess.kill(realProcess.pid, sig);
    };
    realProcess.on(sig, onSignal);
  }
  holder[KEY] = reg;
  return reg;
}

/** Kill this child when the test process ends, and do not let it keep jest alive. */
export function trackChild(child: ChildProcess): void {
  const reg = registry();
  reg.children.add(child);
  child.once('exit', () => reg.children.delete(child));
  child.unref();
  for (const s of [child.stdout, child.stderr]) (s as net.Socket | null)?.unref();
}

/** Remove this directory when the test process ends, if close() did not. */
export function trackDir(dir: string): void {
  registry().dirs.add(dir);
}

export function untrackDir(dir: string): void {
  registry().dirs.delete(dir);
}

/** A port free right now (another process may still take it before we use it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export function isRunning(child: ChildProcess | undefined): boolean {
  return !!child && child.exitCode === null && child.signalCode === null;
}

/** Resolves true once the child has exited, false if it is still running after ms. */
export function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (!isRunning(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.removeListener('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** Send signal, then SIGKILL if the child is still alive after graceMs. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (!isRunning(child)) return;
  child.kill(signal);
  if (await waitExit(child, graceMs)) return;
  child.kill('SIGKILL');
  await waitExit(child, 5000);
}

/**
 * Children are unref'd, so awaiting one alone would let a plain node script exit
 * early: hold the event loop open until p settles.
 */
export function keepAlive<T>(p: Promise<T>): Promise<T> {
  const timer = setInterval(() => undefined, 60_000);
  return p.finally(() => clearInterval(timer));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Last `max` characters of s, for error messages. */
export function tail(s: string, max = 4000): string {
  return s.length <= max ? s : `…${s.slice(-max)}`;
}
