// Proves the e2e harness itself (Redis lifecycle, ws client, helpers); server.ts needs
// dist/main.js and is exercised by the server's own e2e specs.
import { existsSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { uniqueId } from '../support/ids';
import { dockerAvailable, startRedis, TestRedis } from '../support/redis';
import { useRedis } from '../support/fixtures';
import { waitFor } from '../support/wait';
import { TestClient } from '../support/ws-client';

// A client that fails at once instead of retrying, to see whether Redis is up.
const probe = (redis: TestRedis) => redis.client({ retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1000 });

describe('startRedis', () => {
  const opened: TestRedis[] = [];
  const open = async (opts?: Parameters<typeof startRedis>[0]) => {
    const redis = await startRedis(opts);
    opened.push(redis);
    return redis;
  };
  afterAll(() => Promise.all(opened.map((r) => r.close())));

  it('answers SET and GET', async () => {
    const redis = await open();
    const key = uniqueId('k');
    const c = redis.client();
    await c.set(key, 'v1');
    expect(await c.get(key)).toBe('v1');
    expect(redis.url).toBe(`redis://${redis.host}:${redis.port}`);
  });

  it('says which Redis it is: a container with REDIS_TEST_CONTAINERS=1 and an engine, else a redis-server child', async () => {
    const redis = await open();
    const own = await open({ restartable: true });
    const pid = async (r: TestRedis) => Number(/process_id:(\d+)/.exec(await r.client().info('server'))?.[1]);
    console.info(`startRedis() gave a ${redis.kind} Redis at ${redis.url} (process_id ${await pid(redis)})`);
    expect(own.kind).toBe('process'); // restartable: always a child process
    if (process.env.REDIS_URL_TEST) return expect(redis.kind).toBe('shared');
    const containers = process.env.REDIS_TEST_CONTAINERS === '1' && (await dockerAvailable());
    expect(redis.kind).toBe(containers ? 'container' : 'process');
    // In a container redis-server is PID 1 of its own PID namespace; a child process never is.
    if (containers) expect(await pid(redis)).toBe(1);
    else expect(await pid(redis)).not.toBe(1);
    expect(await pid(own)).not.toBe(1);
  });

  it('keeps data across stop()/start() when persistent, on the same port', async () => {
    const redis = await open({ persistent: true, restartable: true });
    const key = uniqueId('k');
    await redis.client().set(key, 'kept');
    await redis.stop();
    expect(
      await probe(redis)
        .ping()
        .catch(() => 'down'),
    ).toBe('down');
    await redis.start();
    expect(await redis.client().get(key)).toBe('kept');
  });

  it('loses data across stop()/start() when not persistent', async () => {
    const redis = await open({ restartable: true });
    const key = uniqueId('k');
    await redis.client().set(key, 'gone');
    await redis.stop();
    await redis.start();
    expect(await redis.client().get(key)).toBeNull();
  });

  it('kill() makes PING fail until start()', async () => {
    const redis = await open({ restartable: true });
    expect(await probe(redis).ping()).toBe('PONG');
    await redis.kill();
    await expect(probe(redis).ping()).rejects.toThrow();
    await redis.start();
    expect(await probe(redis).ping()).toBe('PONG');
  });

  it('close() stops Redis, quits clients, removes the data dir, and is idempotent', async () => {
    const redis = await startRedis({ persistent: true });
    const c = redis.client();
    const dir = (await c.config('GET', 'dir')) as string[];
    expect(existsSync(dir[1])).toBe(true);
    await redis.close();
    await redis.close();
    expect(c.status).toBe('end');
    expect(existsSync(dir[1])).toBe(false);
    await expect(probe(redis).ping()).rejects.toThrow();
  });

  describe('with REDIS_URL_TEST', () => {
    const saved = process.env.REDIS_URL_TEST;
    afterEach(() => {
      if (saved === undefined) delete process.env.REDIS_URL_TEST;
      else process.env.REDIS_URL_TEST = saved;
    });

    it('uses the shared Redis, refuses restarts, and still owns restartable ones', async () => {
      const owner = await open({ restartable: true });
      process.env.REDIS_URL_TEST = owner.url;
      const shared = await open();
      expect(shared.url).toBe(owner.url);
      expect(shared.restartable).toBe(false);
      expect(await shared.client().ping()).toBe('PONG');
      await expect(shared.stop()).rejects.toThrow(/harness-owned Redis/);
      await expect(shared.kill()).rejects.toThrow(/harness-owned Redis/);
      const own = await open({ restartable: true });
      expect(own.port).not.toBe(owner.port);
      await shared.close();
      expect(await owner.client().ping()).toBe('PONG'); // closing the shared one leaves it up
    });
  });

  it('reports a missing redis-server binary clearly', async () => {
    const saved = process.env.REDIS_SERVER_BIN;
    process.env.REDIS_SERVER_BIN = '/nonexistent/redis-server';
    try {
      await expect(startRedis({ restartable: true })).rejects.toThrow(/Could not run \/nonexistent\/redis-server/);
    } finally {
      if (saved === undefined) delete process.env.REDIS_SERVER_BIN;
      else process.env.REDIS_SERVER_BIN = saved;
    }
  });
});

describe('TestClient', () => {
  // A stand-in for the real gateway: identify -> ready (or error + 4401), 'push' -> messages.
  let wss: WebSocketServer;
  let url: string;
  const acks: string[][] = [];
  beforeAll(async () => {
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => wss.once('listening', resolve));
    url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`;
    wss.on('connection', (ws: WebSocket) => {
      const send = (event: string, data: unknown) => ws.send(JSON.stringify({ event, data }));
      ws.on('message', (raw) => {
        const { event, data } = JSON.parse(String(raw));
        if (event === 'identify' && data.token === 'bad') {
          send('error', { code: 'UNAUTHORIZED', message: 'bad token' });
          ws.close(4401, 'unauthorized');
        } else if (event === 'identify') {
          send('ready', { id: data.id, channel: `rm.users.${data.id}`, queued: 0 });
        } else if (event === 'push') {
          send('noise', {});
          for (let i = 0; i < data.n; i++) send('message', { id: `m${i}`, payload: `p${i}` });
        } else if (event === 'ack') {
          acks.push(data.ids);
        }
      });
    });
  });
  afterAll(() => new Promise((resolve) => wss.close(resolve)));

  it('identifies, waits for frames in order, and closes', async () => {
    const c = await TestClient.connect(url);
    const ready = await c.identify('alice');
    expect(ready.data).toEqual({ id: 'alice', channel: 'rm.users.alice', queued: 0 });
    c.send('push', { n: 3 });
    expect((await c.next((f) => f.event === 'message')).data.id).toBe('m0');
    expect((await c.next()).data.id).toBe('m1'); // frames before the last match stay consumed
    expect((await c.messages(3)).map((f) => f.data.id)).toEqual(['m0', 'm1', 'm2']);
    expect(c.frames.map((f) => f.event)).toEqual(['ready', 'noise', 'message', 'message', 'message']);
    await c.close();
    expect(c.isOpen).toBe(false);
    expect((await c.closed()).code).toBe(1000);
  });

  it('rejects identify on an error frame, then sees the close', async () => {
    const c = await TestClient.connect(url);
    await expect(c.identify('bob', 'bad')).rejects.toThrow(/identify as bob failed: .*UNAUTHORIZED/);
    expect(await c.closed()).toEqual({ code: 4401, reason: 'unauthorized' });
    await expect(c.next(() => true, 200)).rejects.toThrow(/Socket closed while waiting for next frame/);
  });

  it('times out with what was awaited and the last 5 frames', async () => {
    const c = await TestClient.connect(url);
    await c.identify('carol');
    c.send('push', { n: 6 });
    await c.messages(6);
    const err = await c.next((f) => f.event === 'never', 100).catch((e: Error) => e);
    expect(String(err)).toMatch(/Timed out after 100 ms waiting for next frame matching .*never/);
    expect(String(err)).toMatch(/Received 8 frame\(s\) \(6 'message'\), last 5: \[.*"m5"/);
    expect(String(err)).not.toMatch(/"m0"/);
    c.terminate();
    await c.closed();
  });

  it('autoAck acks every message in batches', async () => {
    const c = await TestClient.connect(url, { autoAck: true });
    await c.identify('dave');
    acks.length = 0;
    c.send('push', { n: 4 });
    await waitFor(() => acks.flat().length === 4, 2000, 'acks of m0..m3');
    expect(acks.flat()).toEqual(['m0', 'm1', 'm2', 'm3']);
    await c.close();
  });

  it('fails to connect with a clear error', async () => {
    await expect(TestClient.connect('ws://127.0.0.1:1/')).rejects.toThrow(/WebSocket connect to ws:\/\/127.0.0.1:1\/ failed/);
  });
});

describe('helpers', () => {
  it('uniqueId gives distinct ids valid per the protocol', () => {
    const ids = Array.from({ length: 1000 }, () => uniqueId());
    expect(new Set(ids).size).toBe(1000);
    for (const id of [...ids, uniqueId('user.x@y')]) expect(id).toMatch(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/);
    expect(() => uniqueId('*')).toThrow(/invalid id/);
  });

  it('waitFor says what it waited for', async () => {
    await expect(waitFor(() => false, 50, 'the moon')).rejects.toThrow(/Timed out after 50 ms waiting for the moon/);
    let n = 0;
    await waitFor(() => ++n > 2);
  });

  it('waitFor checks every intervalMs, and adds the detail and the last error to a timeout', async () => {
    let checks = 0;
    const err = await waitFor(
      () => {
        checks++;
        throw new Error('not yet');
      },
      250,
      'the tide',
      { intervalMs: 100, detail: () => 'the logs' },
    ).catch((e: Error) => e);
    expect(String(err)).toMatch(/Timed out after 250 ms waiting for the tide \(last check threw: Error: not yet\)\nthe logs$/);
    expect(checks).toBeGreaterThanOrEqual(2);
    expect(checks).toBeLessThanOrEqual(5);
  });
});

describe('useRedis', () => {
  const shared = useRedis({ restartable: true });
  // Used while the describe is collected, before its beforeAll has run.
  const early = (() => {
    try {
      return shared.redis;
    } catch (err) {
      return err;
    }
  })();

  it('refuses to be used before its beforeAll', () => {
    expect(String(early)).toMatch(/The suite's Redis is not started/);
  });

  it('gives the Redis and one client of it, made again after stop() quit it', async () => {
    const key = uniqueId('k');
    const first = shared.r;
    expect(shared.r).toBe(first);
    await first.set(key, 'v');
    expect(await shared.redis.client().get(key)).toBe('v');
    await shared.redis.stop();
    await shared.redis.start();
    expect(shared.r).not.toBe(first);
    expect(await shared.r.ping()).toBe('PONG');
  });
});
