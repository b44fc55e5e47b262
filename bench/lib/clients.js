'use strict';
// WebSocket clients of the bench, and the tracker that checks what they receive.
//
// Payloads are `<seq>|<publish time ms>|xxx…` padded to 100 bytes, seq counting
// per user from 0; warmup payloads start with `w`. The tracker counts lost,
// duplicated and out-of-order messages per user and, if asked, the latency from
// publish to receipt (both clocks are this process's performance.now()).
const WebSocket = require('ws');

const PAD = 'x'.repeat(200);
const PAYLOAD_BYTES = 100;

function payload(seq, prefix = '') {
  const head = `${prefix}${seq}|${performance.now().toFixed(3)}|`;
  return head + PAD.slice(0, PAYLOAD_BYTES - head.length);
}

class Client {
  constructor(pool, user, index, localAddress) {
    this.pool = pool;
    this.user = user;
    this.index = index;
    this.channel = `rm.users.${user}`;
    this.localAddress = localAddress;
    this.acks = [];
    this.ackDueAt = 0;
    this.ackTimer = undefined;
    this.ws = null;
    this.readyAt = 0;
    this.identifiedAt = 0;
    this.queued = 0;
    this.state = null; // the tracker's per-user state
    this.onReady = null;
  }

  connect(timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.pool.url, {
        perMessageDeflate: false,
        skipUTF8Validation: true,
        handshakeTimeout: timeoutMs,
        localAddress: this.localAddress,
      });
      this.ws = ws;
      const fail = (error) => reject(error);
      ws.once('error', fail);
      ws.once('open', () => {
        ws.off('error', fail);
        ws.on('error', (error) => this.pool.errors.push(`${this.user}: ${error.message}`));
        resolve();
      });
      ws.on('message', (data) => this.frame(data));
      ws.on('close', (code) => {
        if (!this.pool.closing) this.pool.errors.push(`${this.user}: closed by the server (${code})`);
      });
    });
  }

  /** The socket, opened (the WebSocket handshake): as MqttClient.open. */
  open(timeoutMs) {
    return this.connect(timeoutMs);
  }

  /** Sends identify; resolves with the `ready` frame's data (rejects after timeoutMs). */
  identify(timeoutMs = 30000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.user}: no ready within ${timeoutMs} ms`)), timeoutMs);
      this.onReady = (data) => {
        clearTimeout(timer);
        resolve(data);
      };
      this.identifiedAt = performance.now();
      this.ws.send(`{"event":"identify","data":{"id":"${this.user}"}}`);
    });
  }

  frame(data) {
    const now = performance.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this.pool.malformed++;
      return;
    }
    if (frame.event === 'message') {
      const d = frame.data;
      if (!d || typeof d.id !== 'string' || typeof d.payload !== 'string' || typeof d.ts !== 'number' || (d.channel !== this.channel && d.channel !== this.pool.groupChannel)) {
        this.pool.malformed++;
        return;
      }
      if (this.pool.sdkAcks) {
        // As the SDK's ack() (client/src/index.ts): a batch leaves when full, or ackDelayMs after its first id.
        this.acks.push(d.id);
        if (this.acks.length >= this.pool.ackBatch) this.flushAcks();
        else this.ackTimer ??= setTimeout(() => this.flushAcks(), this.pool.ackDelayMs);
      } else {
        // Each batch waits 0.5-1.5 × ackDelayMs, so clients fed in lockstep (round-robin) do not ack in lockstep.
        if (this.acks.push(d.id) === 1) this.ackDueAt = now + this.pool.ackDelayMs * (0.5 + Math.random());
        if (this.acks.length >= this.pool.ackBatch) this.flushAcks();
        else this.pool.dirty.add(this);
      }
      this.pool.onMessage(this, d.payload, now);
    } else if (frame.event === 'ready') {
      this.readyAt = now;
      this.queued = frame.data && frame.data.queued;
      if (this.onReady) this.onReady(frame.data);
    } else if (frame.event === 'error') {
      this.pool.errors.push(`${this.user}: error frame ${JSON.stringify(frame.data)}`);
    }
  }

  flushAcks() {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.acks.length === 0) return;
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ event: 'ack', data: { ids: this.acks } }));
      this.pool.ackFrames++;
      this.pool.ackedIds += this.acks.length;
    }
    this.acks = [];
  }
}

/**
 * A set of clients sharing one ack policy: a client acks when it holds
 * `ackBatch` unacked ids, or when its oldest unacked id is about `ackDelayMs`
 * old (0.5-1.5 × that, drawn per batch: clients do not ack in synchronised waves;
 * with `sdk`, exactly that old, on a timer per client, as the SDK does).
 * `groupChannel`: a group channel whose messages the clients get too.
 */
class Pool {
  constructor(url, { ackBatch = 100, ackDelayMs = 100, sdk = false } = {}, { groupChannel } = {}) {
    this.url = url;
    this.ackBatch = ackBatch;
    this.sdkAcks = sdk;
    this.groupChannel = groupChannel;
    this.clients = [];
    this.dirty = new Set();
    this.errors = [];
    this.malformed = 0;
    this.ackFrames = 0;
    this.ackedIds = 0;
    this.closing = false;
    this.onMessage = () => {};
    this.ackDelayMs = ackDelayMs;
    this.timer = sdk ? undefined : setInterval(() => this.flushDue(), Math.min(10, ackDelayMs));
  }

  flushDue() {
    const now = performance.now();
    for (const client of this.dirty) {
      if (client.acks.length === 0) this.dirty.delete(client);
      else if (client.ackDueAt <= now) {
        client.flushAcks();
        this.dirty.delete(client);
      }
    }
  }

  flushAll() {
    if (this.sdkAcks) for (const client of this.clients) if (client.acks.length) client.flushAcks();
    for (const client of this.dirty) client.flushAcks();
    this.dirty.clear();
  }

  /**
   * Opens one socket per user (`concurrency` handshakes at a time, source
   * addresses spread over `localAddresses`) and, unless identify is false,
   * identifies each as soon as it is open. Resolves when all are ready.
   */
  async open(users, { concurrency = 200, identify = true, localAddresses = ['127.0.0.1'], deadlineMs = 120000 } = {}) {
    const todo = this.add(users, { localAddresses });
    const deadline = Date.now() + deadlineMs;
    let next = 0;
    const worker = async () => {
      while (next < todo.length) {
        if (Date.now() > deadline) throw new Error(`opening ${todo.length} sockets took over ${deadlineMs} ms`);
        const client = todo[next++];
        await client.connect();
        if (identify) await client.identify();
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, worker));
    return todo;
  }

  /** Clients for users (source addresses spread over `localAddresses`), not opened yet. */
  add(users, { localAddresses = ['127.0.0.1'] } = {}) {
    const start = this.clients.length;
    for (let i = 0; i < users.length; i++) this.clients.push(new Client(this, users[i], start + i, localAddresses[i % localAddresses.length]));
    return this.clients.slice(start);
  }

  async close() {
    this.closing = true;
    clearInterval(this.timer);
    for (const c of this.clients) clearTimeout(c.ackTimer);
    const closed = this.clients.map(
      (c) =>
        new Promise((resolve) => {
          if (!c.ws || c.ws.readyState === WebSocket.CLOSED) return resolve();
          c.ws.once('close', resolve);
          c.ws.terminate();
        }),
    );
    await Promise.race([Promise.all(closed), new Promise((r) => setTimeout(r, 5000))]);
  }
}

/**
 * Checks the messages of one phase: `perUser` messages for each of `clients`.
 * With `latencies`, keeps publish-to-receipt times (ms).
 */
class Tracker {
  constructor(clients, perUser, { latencies = false } = {}) {
    this.perUser = perUser;
    this.expected = clients.length * perUser;
    this.unique = 0;
    this.duplicated = 0;
    this.outOfOrder = 0;
    this.foreign = 0; // not this phase's payloads (warmup leftovers, bad seq)
    this.firstAt = 0;
    this.lastAt = 0;
    this.lat = latencies ? new Float64Array(this.expected) : null;
    this.latN = 0;
    this.waiters = [];
    for (const client of clients) client.state = { seen: new Uint8Array(perUser), max: -1, count: 0, firstAt: 0, lastAt: 0 };
  }

  /** The pool's onMessage for this phase. */
  get handler() {
    return (client, p, now) => this.on(client, p, now);
  }

  on(client, p, now) {
    const st = client.state;
    if (!st || p.charCodeAt(0) === 119 /* w */) {
      this.foreign++;
      return;
    }
    const bar = p.indexOf('|');
    const seq = Number(p.slice(0, bar));
    if (!(seq >= 0 && seq < this.perUser)) {
      this.foreign++;
      return;
    }
    if (st.seen[seq]) {
      this.duplicated++;
      return;
    }
    st.seen[seq] = 1;
    if (seq < st.max) this.outOfOrder++;
    else st.max = seq;
    if (st.count++ === 0) st.firstAt = now;
    st.lastAt = now;
    if (this.unique++ === 0) this.firstAt = now;
    this.lastAt = now;
    if (this.lat) this.lat[this.latN++] = now - Number(p.slice(bar + 1, p.indexOf('|', bar + 1)));
    if (this.unique === this.expected) for (const w of this.waiters.splice(0)) w();
  }

  get lost() {
    return this.expected - this.unique;
  }

  /** Resolves when every message arrived, or after the deadline / a stall with no new message for stallMs. */
  async done(deadlineMs, stallMs = 10000) {
    if (this.unique === this.expected) return true;
    const end = performance.now() + deadlineMs;
    let last = this.unique;
    let lastChange = performance.now();
    return new Promise((resolve) => {
      const timer = setInterval(() => {
        const now = performance.now();
        if (this.unique !== last) {
          last = this.unique;
          lastChange = now;
        }
        if (now > end || now - lastChange > stallMs) {
          clearInterval(timer);
          resolve(false);
        }
      }, 50);
      this.waiters.push(() => {
        clearInterval(timer);
        resolve(true);
      });
    });
  }

  latencyStats() {
    if (!this.lat || this.latN === 0) return null;
    const a = this.lat.slice(0, this.latN).sort();
    const q = (p) => a[Math.min(a.length - 1, Math.floor(p * a.length))];
    return { p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: a[a.length - 1], n: a.length };
  }
}

module.exports = { Pool, Tracker, payload, PAYLOAD_BYTES };
