/**
 * The wire contract's numbered guarantees on one instance, through real sockets
 * against a real Redis. Each describe names the point of the contract it holds.
 */
import { connectionCount, owedCount } from './support/queue-entries';
import { uniqueId } from './support/ids';
import { useServer } from './support/fixtures';
import { waitFor } from './support/wait';
import type { Frame } from './support/ws-client';

const MAX_INFLIGHT = 20;

describe('RedMessenger wire contract (one instance)', () => {
  const s = useServer({ MAX_INFLIGHT: String(MAX_INFLIGHT), IDENTIFY_TIMEOUT_MS: '1500' });
  const { server } = s;

  const connect = (opts: { autoAck?: boolean } = {}) => s.client(opts);
  const online = async (id: string, opts: { autoAck?: boolean } = {}) => {
    const client = await connect(opts);
    await client.identify(id);
    return client;
  };
  const publish = async (id: string, ...payloads: string[]) => {
    const pipeline = s.r.pipeline();
    for (const payload of payloads) pipeline.publish(`rm.users.${id}`, payload);
    await pipeline.exec();
  };
  const payloadsOf = (frames: Frame[]) => frames.map((frame) => frame.data.payload);
  const queued = (id: string) => s.r.lrange(`rm:users:${id}:messages`, 0, -1);
  const waitQueued = (id: string, n: number) => waitFor(async () => (await s.r.llen(`rm:users:${id}:messages`)) === n, 5000, `${n} entries queued for ${id}`);
  const range = (n: number, prefix = 'm') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

  describe('1. online delivery', () => {
    it('delivers to an identified socket, byte for byte, with id, channel and ts', async () => {
      const id = uniqueId();
      const client = await online(id);
      const payload = 'Hello, world! ünïcödé "quotes" \\ back\nslash {"json":true} 🎉';
      const before = Date.now();

      await publish(id, payload);

      const [message] = await client.messages(1);
      expect(message.data).toEqual({ id: expect.any(String), channel: `rm.users.${id}`, payload, ts: expect.any(Number) });
      expect(message.data.ts).toBeGreaterThanOrEqual(before - 1000);
      expect(message.data.ts).toBeLessThanOrEqual(Date.now() + 1000);
    });

    it('delivers to every socket of the id, in publish order', async () => {
      const id = uniqueId();
      const first = await online(id, { autoAck: true });
      const second = await online(id, { autoAck: true });

      await publish(id, ...range(15));

      expect(payloadsOf(await first.messages(15))).toEqual(range(15));
      expect(payloadsOf(await second.messages(15))).toEqual(range(15));
      expect(await queued(id)).toEqual([]);
    });

    it('sends ready once, before any message', async () => {
      const id = uniqueId();
      await publish(id, 'queued');
      await waitQueued(id, 1);
      const client = await online(id, { autoAck: true });
      await publish(id, 'live');

      await client.messages(2);
      expect(client.frames.map((frame) => frame.event)).toEqual(['ready', 'message', 'message']);
    });
  });

  describe('2. offline queueing', () => {
    it('appends to rm:users:<id>:messages in publish order, exactly once', async () => {
      const id = uniqueId();

      await publish(id, 'one', 'two', 'three');

      await waitQueued(id, 3);
      expect((await queued(id)).map((entry) => JSON.parse(entry).rm.payload)).toEqual(['one', 'two', 'three']);
    });

    it('queues again once the last socket of the id has gone', async () => {
      const id = uniqueId();
      const client = await online(id, { autoAck: true });
      await client.close();
      await waitFor(async () => (await connectionCount(s.r, id)) === 0, 5000, 'the connection to be unregistered');

      await publish(id, 'after');

      await waitQueued(id, 1);
    });

    it('drops a PUBLISH to an invalid user channel, queueing nothing', async () => {
      const marker = uniqueId();
      for (const bad of ['', '*', 'a:b', 'x]', 'with space', `${'x'.repeat(129)}`]) await s.r.publish(`rm.users.${bad}`, marker);
      await publish(marker, 'valid');

      await waitQueued(marker, 1);
      const keys = await s.r.keys('rm:users:*:messages');
      for (const key of keys) expect(await s.r.lrange(key, 0, -1)).not.toContainEqual(expect.stringContaining(`"payload":"${marker}"`));
      await waitFor(() => /Dropping message on invalid channel/.test(server.logs()), 2000, 'a log line for the dropped message');
    });
  });

  describe('3. purge on identify', () => {
    it('reports the queued count in ready, then delivers the queue in order, then live messages', async () => {
      const id = uniqueId();
      await publish(id, ...range(30, 'q'));
      await waitQueued(id, 30);

      const client = await connect({ autoAck: true });
      const ready = await client.identify(id);
      await publish(id, ...range(5, 'live'));

      expect(ready.data).toEqual({ id, channel: `rm.users.${id}`, queued: 30 });
      expect(payloadsOf(await client.messages(35))).toEqual([...range(30, 'q'), ...range(5, 'live')]);
      expect(await queued(id)).toEqual([]);
    });

    it('delivers raw RPUSHed entries as-is, in order with the others', async () => {
      const id = uniqueId();
      await publish(id, 'published');
      await waitQueued(id, 1);
      await s.r.rpush(`rm:users:${id}:messages`, 'raw text', '{"not":"an envelope"}');

      const client = await connect({ autoAck: true });
      expect((await client.identify(id)).data.queued).toBe(3);

      const messages = await client.messages(3);
      expect(payloadsOf(messages)).toEqual(['published', 'raw text', '{"not":"an envelope"}']);
      expect(messages[1].data).toEqual({ id: expect.any(String), channel: `rm.users.${id}`, payload: 'raw text', ts: expect.any(Number) });
    });

    it('loses and reorders nothing published while a large purge runs', async () => {
      const id = uniqueId();
      const backlog = range(2000, 'q');
      for (let i = 0; i < backlog.length; i += 500) await publish(id, ...backlog.slice(i, i + 500));
      await waitQueued(id, 2000);

      const client = await connect({ autoAck: true });
      const ready = client.identify(id);
      const during = range(200, 'p');
      for (let i = 0; i < during.length; i += 20) await publish(id, ...during.slice(i, i + 20));
      expect((await ready).data.queued).toBeGreaterThanOrEqual(2000);

      const messages = await client.messages(2200, 30000);
      expect(payloadsOf(messages)).toEqual([...backlog, ...during]);
      expect(new Set(messages.map((m) => m.data.id)).size).toBe(2200);
      await waitFor(async () => (await s.r.exists(`rm:users:${id}:owed`)) === 0, 5000, 'every message acked');
    });
  });

  describe('4. at-least-once', () => {
    it('returns unacked messages to the head of the queue, in order, when the last socket closes', async () => {
      const id = uniqueId();
      await publish(id, 'a', 'b', 'c');
      await waitQueued(id, 3);
      const client = await online(id);
      const [a] = await client.messages(3);
      client.ack([a.data.id]);
      await waitFor(async () => (await owedCount(s.r, id)) === 2, 5000, 'the ack to land');

      client.terminate();
      await waitQueued(id, 2);
      await publish(id, 'd');
      await waitQueued(id, 3);

      const again = await online(id, { autoAck: true });
      const messages = await again.messages(3);
      expect(payloadsOf(messages)).toEqual(['b', 'c', 'd']);
      expect(messages[0].data.id).toBe(client.frames.find((f) => f.data?.payload === 'b')!.data.id);
    });

    it('sends every owed, unsent message to a second socket of the same id, and an ack from either frees both', async () => {
      const id = uniqueId();
      const first = await online(id);
      await publish(id, 'x', 'y');
      const [x, y] = await first.messages(2);

      const second = await online(id);
      expect(payloadsOf(await second.messages(2))).toEqual(['x', 'y']);
      second.ack([x.data.id, y.data.id]);
      await waitFor(async () => (await s.r.exists(`rm:users:${id}:owed`)) === 0, 5000, 'owed to be empty');

      await first.close();
      await second.close();
      await waitFor(async () => (await connectionCount(s.r, id)) === 0, 5000, 'both connections to be gone');
      expect(await queued(id)).toEqual([]);
    });

    it('keeps messages owed while another socket of the id is still connected', async () => {
      const id = uniqueId();
      const stays = await online(id);
      const leaves = await online(id);
      await publish(id, 'kept');
      await leaves.messages(1);
      await stays.messages(1);

      leaves.terminate();
      await waitFor(async () => (await connectionCount(s.r, id)) === 1, 5000, 'one connection left');

      expect(await queued(id)).toEqual([]);
      expect(await owedCount(s.r, id)).toBe(1);
    });

    it('ignores acks of ids that are not owed', async () => {
      const id = uniqueId();
      const client = await online(id);
      await publish(id, 'only');
      const [only] = await client.messages(1);

      client.ack(['nope', '999999999', only.data.id + 'x']);
      client.send('unknown-event-for-sync', {});
      await client.next((f) => f.event === 'error');

      expect(await owedCount(s.r, id)).toBe(1);
    });
  });

  describe('5. flow control', () => {
    it(`holds at most MAX_INFLIGHT (${MAX_INFLIGHT}) unacked messages per socket; the rest wait in Redis`, async () => {
      const id = uniqueId();
      const client = await online(id);
      const all = range(MAX_INFLIGHT * 3);

      await publish(id, ...all);
      const firstWindow = await client.messages(MAX_INFLIGHT);
      await new Promise((resolve) => setTimeout(resolve, 300));

      expect(client.frames.filter((f) => f.event === 'message')).toHaveLength(MAX_INFLIGHT);
      expect(await owedCount(s.r, id)).toBe(MAX_INFLIGHT * 3);

      client.ack(firstWindow.slice(0, 5).map((m) => m.data.id));
      await client.messages(MAX_INFLIGHT + 5);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(client.frames.filter((f) => f.event === 'message')).toHaveLength(MAX_INFLIGHT + 5);

      // Acking what arrived lets the rest out, in order.
      while (client.frames.filter((f) => f.event === 'message').length < all.length) {
        const received = client.frames.filter((f) => f.event === 'message');
        client.ack(received.map((f) => f.data.id));
        await client.messages(Math.min(received.length + 1, all.length));
      }
      expect(payloadsOf(await client.messages(all.length, 10000))).toEqual(all);
    });

    it(`counts every owed message in ready.queued, however many MAX_INFLIGHT lets out`, async () => {
      const id = uniqueId();
      await publish(id, ...range(MAX_INFLIGHT * 2 + 3));
      await waitQueued(id, MAX_INFLIGHT * 2 + 3);

      const client = await connect();
      expect((await client.identify(id)).data.queued).toBe(MAX_INFLIGHT * 2 + 3);
      await client.messages(MAX_INFLIGHT);
    });
  });

  describe('7. groups', () => {
    it('fans a group message out to each member: delivered if online, queued if not, with the group channel', async () => {
      const cid = uniqueId('cats');
      const here = uniqueId();
      const away = uniqueId();
      await s.r.sadd(`rm:channels:${cid}:subscribers`, here, away, 'bad:member', '*');
      const client = await online(here, { autoAck: true });

      await s.r.publish(`rm.channels.${cid}`, 'Meow!');

      const [message] = await client.messages(1);
      expect(message.data).toMatchObject({ channel: `rm.channels.${cid}`, payload: 'Meow!' });
      await waitQueued(away, 1);
      expect(JSON.parse((await queued(away))[0]).rm).toMatchObject({ channel: `rm.channels.${cid}`, payload: 'Meow!' });
      expect(await s.r.keys('rm:users:bad:member*')).toEqual([]);
      await waitFor(() => /Skipping invalid member id "bad:member"/.test(server.logs()), 2000, 'a log line for the invalid member');
    });

    it("keeps publish order between a member's own messages and group messages", async () => {
      const cid = uniqueId('g');
      const id = uniqueId();
      await s.r.sadd(`rm:channels:${cid}:subscribers`, id);
      const client = await online(id, { autoAck: true });

      const pipeline = s.r.pipeline();
      for (let i = 0; i < 30; i++) pipeline.publish(i % 2 ? `rm.channels.${cid}` : `rm.users.${id}`, `m${i}`);
      await pipeline.exec();

      const messages = await client.messages(30);
      expect(payloadsOf(messages)).toEqual(range(30));
      expect(messages[1].data.channel).toBe(`rm.channels.${cid}`);
    });

    it('drops a PUBLISH to an invalid group channel', async () => {
      await s.r.publish('rm.channels.a:b', 'x');
      await waitFor(() => /Dropping message on invalid channel "rm.channels.a:b"/.test(server.logs()), 2000, 'a log line for the dropped group message');
    });
  });

  describe('HTTP', () => {
    it('GET /health answers 200 with "status":"ok" in the terminus format', async () => {
      const response = await fetch(`${server.url}/health`);

      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ status: 'ok', info: { redis: { status: 'up' } } });
    });
  });
});
