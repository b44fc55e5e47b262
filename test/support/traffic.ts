// Traffic helpers for the multi-instance, Cluster and Sentinel e2e specs: publishing in
// order, a continuous publisher that records what it sent and when, reading received
// messages back per user, and /metrics counters.
import type { Cluster, Redis } from 'ioredis';
import type { TestServer } from './server';
import type { Frame, TestClient } from './ws-client';

export type AnyRedis = Redis | Cluster;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const range = (n: number, prefix = 'm') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
export const payloadsOf = (frames: Frame[]) => frames.map((f) => f.data.payload as string);
export const messagesOf = (c: TestClient): Frame[] => c.frames.filter((f) => f.event === 'message');

/** PUBLISHes in order, pipelined in chunks; throws on the first error. */
export async function publishAll(r: AnyRedis, channel: string, payloads: string[]): Promise<number[]> {
  const receivers: number[] = [];
  for (let i = 0; i < payloads.length; i += 500) {
    const p = r.pipeline();
    for (const payload of payloads.slice(i, i + 500)) p.publish(channel, payload);
    for (const [err, n] of (await p.exec()) ?? []) {
      if (err) throw err;
      receivers.push(Number(n));
    }
  }
  return receivers;
}

/** Asserts the payloads are exactly `expected`, with a short diff on failure. */
export function expectSequence(actual: string[], expected: string[], what: string): void {
  if (actual.length === expected.length && actual.every((p, i) => p === expected[i])) return;
  const at = actual.findIndex((p, i) => p !== expected[i]);
  const i = at < 0 ? Math.min(actual.length, expected.length) : at;
  throw new Error(
    `${what}: got ${actual.length} payloads, expected ${expected.length}; first difference at index ${i}: ` +
      `got ${JSON.stringify(actual.slice(i, i + 3))}, expected ${JSON.stringify(expected.slice(i, i + 3))}`,
  );
}

/** A counter (or gauge) without labels from an instance's /metrics. */
export async function metric(server: TestServer, name: string): Promise<number> {
  const res = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`GET /metrics on ${server.port} answered ${res.status}`);
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await res.text());
  if (!m) throw new Error(`${name} not in /metrics of ${server.port}`);
  return Number(m[1]);
}

/** Runs fn; on failure, the servers' log tails are appended to the error. */
export async function withLogs<T>(servers: TestServer[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const e = err as Error;
    e.message += servers.map((s, i) => `\n--- server ${i} (port ${s.port}) log tail ---\n${s.logs().slice(-5000)}`).join('');
    throw e;
  }
}

/** One sent message: the user, its per-user sequence number, when the PUBLISH left and how many subscribers heard it. */
export interface Sent {
  user: string;
  seq: number;
  sentAt: number;
  receivers: number;
}

/**
 * Publishes to `users` round-robin, one PUBLISH every `everyMs` (awaited: one at a time,
 * so the publish order is the send order), payload `<user>|<seq>|<sentAt>`, until stop().
 * Errors (Redis away during a failover) are recorded, not thrown: the message counts as not sent.
 */
export class Publisher {
  readonly sent: Sent[] = [];
  readonly failed: Array<{ user: string; seq: number; at: number; error: string }> = [];
  private readonly seqs = new Map<string, number>();
  private running = true;
  private done: Promise<void>;

  constructor(
    private readonly r: AnyRedis,
    private readonly users: string[],
    private readonly everyMs = 2,
  ) {
    this.done = this.loop();
  }

  static payload(user: string, seq: number, at: number): string {
    return `${user}|${seq}|${at}`;
  }

  static parse(payload: string): { user: string; seq: number; at: number } {
    const [user, seq, at] = payload.split('|');
    return { user, seq: Number(seq), at: Number(at) };
  }

  private async loop(): Promise<void> {
    let i = 0;
    while (this.running) {
      const user = this.users[i++ % this.users.length];
      const seq = this.seqs.get(user) ?? 0;
      this.seqs.set(user, seq + 1);
      const at = Date.now();
      try {
        const receivers = await this.r.publish(`rm.users.${user}`, Publisher.payload(user, seq, at));
        this.sent.push({ user, seq, sentAt: at, receivers });
      } catch (error) {
        this.failed.push({ user, seq, at, error: (error as Error).message });
      }
      if (this.everyMs > 0) await sleep(this.everyMs);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

/**
 * Compares what a user was sent with what arrived (payloads `<user>|<seq>|<at>`, in
 * arrival order): duplicates, order, and the lost ones.
 */
export function checkUser(sent: Sent[], received: string[]): { lost: Sent[]; duplicates: number; outOfOrder: string | undefined } {
  const got = received.map((p) => Publisher.parse(p));
  const seen = new Set<number>();
  let duplicates = 0;
  let outOfOrder: string | undefined;
  let last = -1;
  for (const g of got) {
    if (seen.has(g.seq)) duplicates++;
    seen.add(g.seq);
    if (g.seq <= last && outOfOrder === undefined) outOfOrder = `${g.user}: seq ${g.seq} arrived after ${last}`;
    last = Math.max(last, g.seq);
  }
  return { lost: sent.filter((s) => !seen.has(s.seq)), duplicates, outOfOrder };
}
