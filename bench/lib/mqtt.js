'use strict';
// Mosquitto for the side-by-side figures: the broker (started by the bench on a free
// loopback port, persistence on, in a temp dir) and a minimal MQTT 3.1.1 client, as
// lean as the RESP publisher, so the load generator spends its CPU on the sockets and
// not on a general client's bookkeeping. QoS 1 only; keepalive 0 (idle sockets send
// nothing). Subscribers use persistent sessions (clean session off, the user id as
// the client id) on `users/<id>`; every PUBLISH they get is PUBACKed at once (the
// PUBACKs of one read leave in one write).
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawn } = require('node:child_process');
const { track, freePort, sleep } = require('./procs');

const MOSQUITTO = process.env.BENCH_MOSQUITTO || '/usr/sbin/mosquitto';
const mosquittoAvailable = () => fs.existsSync(MOSQUITTO);

const CONNECT = 1;
const CONNACK = 2;
const PUBLISH = 3;
const PUBACK = 4;
const SUBSCRIBE = 8;
const SUBACK = 9;
const DISCONNECT = Buffer.from([0xe0, 0x00]);

function remainingLength(n) {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function packet(first, body) {
  return Buffer.concat([Buffer.from([first, ...remainingLength(body.length)]), body]);
}

const u16 = (n) => Buffer.from([n >> 8, n & 0xff]);
const str = (s) => {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([u16(b.length), b]);
};

/** CONNECT, MQTT 3.1.1, keepalive 0; clean session as asked. */
const connectPacket = (clientId, clean) => packet(CONNECT << 4, Buffer.concat([str('MQTT'), Buffer.from([4, clean ? 0x02 : 0x00, 0, 0]), str(clientId)]));
const subscribePacket = (pid, topic) => packet((SUBSCRIBE << 4) | 0x02, Buffer.concat([u16(pid), str(topic), Buffer.from([1])]));
const pubackPacket = (pid) => Buffer.from([PUBACK << 4, 2, pid >> 8, pid & 0xff]);

/** A QoS 1 PUBLISH as a latin1 string (topic and payload are ASCII): cheap to concatenate by the thousand. */
function publishString(topic, payload, pid) {
  const bodyLen = 2 + topic.length + 2 + payload.length;
  let head = String.fromCharCode((PUBLISH << 4) | 0x02);
  for (const b of remainingLength(bodyLen)) head += String.fromCharCode(b);
  return `${head}${String.fromCharCode(topic.length >> 8, topic.length & 0xff)}${topic}${String.fromCharCode(pid >> 8, pid & 0xff)}${payload}`;
}

/** Splits a byte stream into packets: onPacket(type, flags, body). */
class Parser {
  constructor(onPacket) {
    this.onPacket = onPacket;
    this.buf = null;
  }

  push(chunk) {
    const buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    let at = 0;
    for (;;) {
      if (buf.length - at < 2) break;
      let len = 0;
      let mul = 1;
      let i = at + 1;
      let complete = false;
      for (; i < buf.length && i < at + 5; i++) {
        len += (buf[i] & 0x7f) * mul;
        mul *= 128;
        if ((buf[i] & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
      }
      if (!complete || buf.length - i < len) break;
      this.onPacket(buf[at] >> 4, buf[at] & 0x0f, buf.subarray(i, i + len));
      at = i + len;
    }
    // A copy of the partial packet left, so that it does not pin the whole chunk.
    this.buf = at < buf.length ? Buffer.from(buf.subarray(at)) : null;
  }
}

class MqttClient {
  constructor(pool, user, index, localAddress) {
    this.pool = pool;
    this.user = user;
    this.index = index;
    this.topic = `users/${user}`;
    this.channel = this.topic;
    this.localAddress = localAddress;
    this.socket = null;
    this.state = null; // the tracker's per-user state
    this.identifiedAt = 0; // CONNECT sent (the identify of MQTT)
    this.readyAt = 0; // CONNACK
    this.sessionPresent = false;
    this.waiting = new Map(); // CONNACK / SUBACK resolvers
    this.parser = new Parser((type, flags, body) => this.onPacket(type, flags, body));
    this.acks = [];
  }

  /** TCP only: CONNECT goes with connect(). */
  open(timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port: this.pool.port, host: '127.0.0.1', localAddress: this.localAddress });
      this.socket = socket;
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`${this.user}: TCP connect took over ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        socket.on('error', (error) => this.pool.errors.push(`${this.user}: ${error.message}`));
        resolve();
      });
      const fail = (error) => {
        clearTimeout(timer);
        reject(error);
      };
      socket.once('error', fail);
      socket.on('data', (chunk) => {
        this.parser.push(chunk);
        if (this.acks.length) {
          socket.write(this.acks.length === 1 ? this.acks[0] : Buffer.concat(this.acks));
          this.pool.ackFrames += this.acks.length;
          this.acks = [];
        }
      });
      socket.on('close', () => {
        if (!this.pool.closing && !this.closing) this.pool.errors.push(`${this.user}: closed by the broker`);
      });
    });
  }

  expect(type, timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.user}: no ${type === CONNACK ? 'CONNACK' : 'SUBACK'} within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.set(type, (body) => {
        clearTimeout(timer);
        resolve(body);
      });
    });
  }

  /** Sends CONNECT (persistent session unless clean); resolves on CONNACK. */
  async connect({ clean = false, timeoutMs = 30000 } = {}) {
    const acked = this.expect(CONNACK, timeoutMs);
    this.identifiedAt = performance.now();
    this.socket.write(connectPacket(this.user, clean));
    const body = await acked;
    if (body[1] !== 0) throw new Error(`${this.user}: CONNACK return code ${body[1]}`);
    this.sessionPresent = (body[0] & 1) === 1;
  }

  /** MQTT's identify: CONNECT to the persistent session (its subscription stays from before). */
  identify(timeoutMs) {
    return this.connect({ timeoutMs });
  }

  async subscribe(timeoutMs = 30000) {
    const acked = this.expect(SUBACK, timeoutMs);
    this.socket.write(subscribePacket(1, this.topic));
    const body = await acked;
    if (body[2] !== 1) throw new Error(`${this.user}: SUBACK granted ${body[2]}`);
  }

  onPacket(type, flags, body) {
    if (type === PUBLISH) {
      const now = performance.now();
      const qos = (flags >> 1) & 3;
      const tlen = body.readUInt16BE(0);
      let at = 2 + tlen;
      if (qos > 0) {
        this.acks.push(pubackPacket(body.readUInt16BE(at)));
        at += 2;
      }
      if (body.toString('latin1', 2, 2 + tlen) !== this.topic) {
        this.pool.malformed++;
        return;
      }
      this.pool.onMessage(this, body.toString('latin1', at), now);
      return;
    }
    if (type === CONNACK) this.readyAt = performance.now();
    const waiter = this.waiting.get(type);
    if (waiter) {
      this.waiting.delete(type);
      waiter(body);
    }
  }

  /** DISCONNECT, then close: the session (subscription and what comes for it) stays on the broker. */
  close() {
    this.closing = true;
    return new Promise((resolve) => {
      const s = this.socket;
      if (!s || s.destroyed) return resolve();
      s.once('close', resolve);
      s.end(DISCONNECT);
      setTimeout(() => s.destroy(), 2000).unref();
    });
  }
}

/** The MQTT counterpart of clients.js's Pool: same fields the tracker and the scenarios read. */
class MqttPool {
  constructor(port) {
    this.port = port;
    this.clients = [];
    this.errors = [];
    this.malformed = 0;
    this.ackFrames = 0; // PUBACKs sent
    this.ackedIds = 0;
    this.closing = false;
    this.onMessage = () => {};
  }

  flushAll() {}

  /**
   * Opens one connection per user, `concurrency` at a time; with identify, sends CONNECT
   * (persistent session) and, with subscribe, subscribes to users/<id> at QoS 1.
   */
  async open(users, { concurrency = 200, identify = true, subscribe = true, localAddresses = ['127.0.0.1'], deadlineMs = 120000 } = {}) {
    const todo = this.add(users, { localAddresses });
    const deadline = Date.now() + deadlineMs;
    let next = 0;
    const worker = async () => {
      while (next < todo.length) {
        if (Date.now() > deadline) throw new Error(`opening ${todo.length} MQTT connections took over ${deadlineMs} ms`);
        const client = todo[next++];
        await client.open();
        if (identify) await client.connect();
        if (identify && subscribe) await client.subscribe();
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, worker));
    return todo;
  }

  add(users, { localAddresses = ['127.0.0.1'] } = {}) {
    const start = this.clients.length;
    for (let i = 0; i < users.length; i++) this.clients.push(new MqttClient(this, users[i], start + i, localAddresses[i % localAddresses.length]));
    return this.clients.slice(start);
  }

  async close() {
    this.closing = true;
    await Promise.race([Promise.all(this.clients.map((c) => c.close())), sleep(5000)]);
  }
}

/** Publishes at QoS 1 on one connection (clean session), pipelined; publish() resolves once every PUBLISH so far is PUBACKed. */
class MqttPublisher {
  constructor(port) {
    this.port = port;
    this.sent = 0;
    this.replies = 0;
    this.errors = 0;
    this.pid = 0;
    this.waiters = [];
  }

  async connect() {
    this.socket = await new Promise((resolve, reject) => {
      const s = net.connect({ port: this.port, host: '127.0.0.1' }, () => resolve(s));
      s.once('error', reject);
    });
    this.socket.setNoDelay(true);
    let connack;
    const connacked = new Promise((resolve) => (connack = resolve));
    const parser = new Parser((type, _flags, body) => {
      if (type === PUBACK) this.replies++;
      else if (type === CONNACK) connack(body);
    });
    this.socket.on('data', (chunk) => {
      parser.push(chunk);
      while (this.waiters.length && this.waiters[0].n <= this.replies) this.waiters.shift().resolve();
    });
    this.socket.write(connectPacket(`bench-pub-${process.pid}-${Date.now()}`, true));
    const body = await connacked;
    if (body[1] !== 0) throw new Error(`publisher: CONNACK return code ${body[1]}`);
  }

  /** One QoS 1 PUBLISH per (topic, payload); at most 65,535 unacknowledged (packet ids). */
  publish(topics, payloads) {
    let out = '';
    for (let i = 0; i < topics.length; i++) {
      this.pid = (this.pid % 65535) + 1;
      out += publishString(topics[i], payloads[i], this.pid);
    }
    this.socket.write(out, 'latin1');
    this.sent += topics.length;
    const n = this.sent;
    return new Promise((resolve) => {
      if (this.replies >= n) resolve();
      else this.waiters.push({ n, resolve });
    });
  }

  close() {
    this.socket?.end(DISCONNECT);
    this.socket?.destroy();
  }
}

async function connectMqttPublisher(port) {
  const pub = new MqttPublisher(port);
  await pub.connect();
  return pub;
}

/**
 * A fresh Mosquitto on a free loopback port: persistence on (a new temp dir), otherwise
 * Debian's defaults (max_inflight_messages 20, no TCP_NODELAY) except max_queued_messages
 * 0 (no limit): the default 1,000 would drop most of a 100,000-message backlog.
 */
async function startMosquitto() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-mosquitto-'));
  const lines = [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence true', `persistence_location ${dir}/`, 'max_queued_messages 0', 'log_dest stderr', 'log_type error', 'log_type warning'];
  // Run as root, Mosquitto drops to its own user, which must own the persistence dir.
  if (process.getuid?.() === 0) {
    let owner = 'root';
    try {
      execFileSync('chown', ['mosquitto', dir], { stdio: 'ignore' });
      owner = 'mosquitto';
    } catch {
      // no mosquitto user: stay root
    }
    lines.push(`user ${owner}`);
  }
  const conf = path.join(dir, 'mosquitto.conf');
  fs.writeFileSync(conf, `${lines.join('\n')}\n`);
  fs.chmodSync(conf, 0o644);
  const proc = track(spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] }), 'mosquitto');
  const deadline = Date.now() + 10000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (!proc.running() || Date.now() > deadline) throw new Error(`mosquitto did not start on ${port}:\n${proc.logs()}`);
    await sleep(50);
  }
  return {
    ...proc,
    kind: 'mosquitto',
    port,
    dir,
    async stop() {
      if (proc.running()) {
        proc.child.kill('SIGTERM');
        const done = await Promise.race([proc.exited, sleep(10000).then(() => null)]);
        if (!done) {
          proc.child.kill('SIGKILL');
          await proc.exited;
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { MqttPool, connectMqttPublisher, startMosquitto, mosquittoAvailable, MOSQUITTO };
