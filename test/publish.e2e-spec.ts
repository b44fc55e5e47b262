/**
 * POST /v1/messages (PROTOCOL v1.1): answered 202 only once the message is stored,
 * every status code of the route, idempotency, groups, and delivery to an online user.
 */
import { connect } from 'node:net';
import { uniqueId } from './support/ids';
import { PUBLISH_KEY, postMessage } from './support/http-publish';
import { entryPayload } from './support/queue-entries';
import { useServer } from './support/fixtures';
import { startRedis } from './support/redis';
import { startServer } from './support/server';

const MAX_PUBLISH_BYTES = 4096;

describe('POST /v1/messages', () => {
  const s = useServer({ PUBLISH_API_KEYS: `another-key-abcdefghijk,${PUBLISH_KEY}`, MAX_PUBLISH_BYTES: String(MAX_PUBLISH_BYTES) });
  const { server } = s;

  const queued = async (id: string) => (await s.r.lrange(`rm:users:${id}:messages`, 0, -1)).map((entry) => JSON.parse(entry).rm);
  const post = (body: unknown, opts?: Parameters<typeof postMessage>[2]) => postMessage(server.url, body, opts);

  describe('202: stored', () => {
    it('stores a message for an offline user before it answers, with its id', async () => {
      const to = uniqueId();
      const answer = await post({ to, payload: 'Hello, world!' });

      expect(answer).toEqual({ status: 202, body: { id: expect.any(String) } });
      expect(await queued(to)).toEqual([{ id: answer.body.id, channel: `rm.users.${to}`, payload: 'Hello, world!', ts: expect.any(Number) }]);
    });

    it('stores a group message for every member under one id and answers it with how many', async () => {
      const cid = uniqueId('g');
      const members = [uniqueId('m'), uniqueId('m'), uniqueId('m')];
      await s.r.sadd(`rm:channels:${cid}:subscribers`, ...members);

      const answer = await post({ group: cid, payload: 'Meow!' });

      expect(answer).toEqual({ status: 202, body: { id: expect.any(String), recipients: 3 } });
      for (const member of members) {
        expect(await queued(member)).toEqual([{ id: answer.body.id, channel: `rm.channels.${cid}`, payload: 'Meow!', ts: expect.any(Number) }]);
      }
    });

    it('a group without members stores nothing and answers 0 recipients', async () => {
      expect(await post({ group: uniqueId('g'), payload: 'x' })).toEqual({ status: 202, body: { id: expect.any(String), recipients: 0 } });
    });

    it('delivers to an online user as a PUBLISH would, ttl and collapseKey in the frame', async () => {
      const to = uniqueId();
      const client = await s.client();
      await client.identify(to);

      const answer = await post({ to, payload: 'live', ttl: 60, collapseKey: 'score' });

      expect(answer.status).toBe(202);
      const [message] = await client.messages(1);
      expect(message.data).toEqual({ id: answer.body.id, channel: `rm.users.${to}`, payload: 'live', ttl: 60, collapseKey: 'score', ts: expect.any(Number) });
    });

    it('delivers each group member its message on its socket', async () => {
      const cid = uniqueId('g');
      const [a, b] = [uniqueId('m'), uniqueId('m')];
      await s.r.sadd(`rm:channels:${cid}:subscribers`, a, b);
      const sockets = await Promise.all(
        [a, b].map(async (id) => {
          const client = await s.client();
          await client.identify(id);
          return client;
        }),
      );

      expect((await post({ group: cid, payload: 'to both' })).body).toEqual({ id: expect.any(String), recipients: 2 });

      for (const client of sockets) {
        const [message] = await client.messages(1);
        expect(message.data).toMatchObject({ channel: `rm.channels.${cid}`, payload: 'to both' });
      }
    });

    it('keeps the order of a producer that waits for each 202', async () => {
      const to = uniqueId();
      for (let i = 0; i < 10; i++) expect((await post({ to, payload: `m${i}` })).status).toBe(202);

      expect((await s.r.lrange(`rm:users:${to}:messages`, 0, -1)).map(entryPayload)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
    });
  });

  describe('400: the message names what is wrong, nothing is stored', () => {
    const to = 'bad-input-user';
    it.each([
      ['neither to nor group', { payload: 'x' }, /to or group is required/],
      ['both to and group', { to, group: 'g', payload: 'x' }, /exactly one of to and group/],
      ['an invalid user id', { to: 'not valid!', payload: 'x' }, /^to must be an id/],
      ['an invalid group id', { group: '-x', payload: 'x' }, /^group must be an id/],
      ['no payload', { to }, /payload is required/],
      ['a payload that is not a string', { to, payload: { a: 1 } }, /payload must be a string/],
      ['ttl 0', { to, payload: 'x', ttl: 0 }, /^ttl must be an integer/],
      ['a fractional ttl', { to, payload: 'x', ttl: 1.5 }, /^ttl must be an integer/],
      ['a ttl as a string', { to, payload: 'x', ttl: '60' }, /^ttl must be an integer/],
      ['an empty collapseKey', { to, payload: 'x', collapseKey: '' }, /^collapseKey must be a string of 1 to 128/],
      ['a collapseKey of 129 characters', { to, payload: 'x', collapseKey: 'k'.repeat(129) }, /^collapseKey must be a string of 1 to 128/],
      ['an unknown field', { to, payload: 'x', colapseKey: 'k' }, /unknown field "colapseKey"/],
      ['a body that is not an object', ['x'], /body must be a JSON object/],
    ])('%s', async (_what, body, message) => {
      const answer = await post(body);

      expect(answer.status).toBe(400);
      expect(answer.body).toEqual({ error: { code: 'BAD_REQUEST', message: expect.stringMatching(message) } });
      expect(await s.r.llen(`rm:users:${to}:messages`)).toBe(0);
    });

    it('a body that is not JSON', async () => {
      const answer = await post(undefined, { raw: '{"to": "x", ' });

      expect(answer.status).toBe(400);
      expect(answer.body.error).toEqual({ code: 'BAD_REQUEST', message: expect.stringMatching(/not valid JSON/) });
    });

    it('a collapseKey of 128 characters (code points) is taken', async () => {
      const id = uniqueId();
      expect((await post({ to: id, payload: 'x', collapseKey: '🎉'.repeat(128) })).status).toBe(202);
    });

    it('an Idempotency-Key longer than 128 characters', async () => {
      const answer = await post({ to: uniqueId(), payload: 'x' }, { idempotencyKey: 'k'.repeat(129) });

      expect(answer).toEqual({ status: 400, body: { error: { code: 'BAD_REQUEST', message: expect.stringMatching(/Idempotency-Key header must be 1 to 128/) } } });
    });
  });

  describe('401, 413', () => {
    it('401 without an Authorization header, and with a wrong key; nothing stored', async () => {
      const to = uniqueId();
      for (const key of [null, 'wrong-key-wrong-key-wrong', `${PUBLISH_KEY}x`, PUBLISH_KEY.slice(0, -1)]) {
        const answer = await post({ to, payload: 'x' }, { key });
        expect(answer).toEqual({ status: 401, body: { error: { code: 'UNAUTHORIZED', message: expect.any(String) } } });
      }
      expect(await s.r.exists(`rm:users:${to}:messages`)).toBe(0);
    });

    it('any of the configured keys is taken', async () => {
      expect((await post({ to: uniqueId(), payload: 'x' }, { key: 'another-key-abcdefghijk' })).status).toBe(202);
    });

    it('413 past MAX_PUBLISH_BYTES (not at it); nothing stored', async () => {
      const to = uniqueId();
      const frame = JSON.stringify({ to, payload: '' });
      const exact = JSON.stringify({ to, payload: 'a'.repeat(MAX_PUBLISH_BYTES - frame.length) });
      expect(Buffer.byteLength(exact)).toBe(MAX_PUBLISH_BYTES);

      expect((await post(undefined, { raw: exact })).status).toBe(202);
      const answer = await post(undefined, { raw: exact.replace('"payload":"', '"payload":"a') });

      expect(answer).toEqual({ status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE', message: expect.stringMatching(/MAX_PUBLISH_BYTES/) } } });
      expect(await s.r.llen(`rm:users:${to}:messages`)).toBe(1);
    });
  });

  describe('a body the route refuses is not read', () => {
    const MiB = 1 << 20;
    /**
     * Over a raw socket: the headers and the body's first `first` bytes, then nothing more
     * (a client that stalls). Resolves with what the server sent once it closed the connection.
     */
    const stalled = (headers: string[], first: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = connect(server.port, '127.0.0.1');
        let answer = '';
        const timer = setTimeout(() => {
          socket.destroy();
          reject(new Error(`not answered and closed within 10 s; got ${JSON.stringify(answer)}`));
        }, 10_000);
        socket.on('data', (data) => (answer += data.toString()));
        socket.on('error', () => undefined); // a reset after the answer is fine
        socket.on('close', () => {
          clearTimeout(timer);
          resolve(answer);
        });
        socket.write(['POST /v1/messages HTTP/1.1', 'Host: 127.0.0.1', 'Content-Type: application/json', ...headers, '', ''].join('\r\n') + first);
      });
    const status = (answer: string) => Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1]);
    const body = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));

    it.each([
      ['no Authorization header', []],
      ['a wrong key', ['Authorization: Bearer wrong-key-wrong-key-wrong']],
    ])('401 for a 1 MiB POST with %s, before the body is sent, and the connection closed', async (_what, auth) => {
      const answer = await stalled([...auth, `Content-Length: ${MiB + 100}`], '{"to": "x", "payload": "');

      expect(status(answer)).toBe(401);
      expect(answer).toMatch(/^Connection: close\r$/im);
      expect(body(answer)).toEqual({ error: { code: 'UNAUTHORIZED', message: expect.any(String) } });
    });

    it('413 by Content-Length, before the body is sent, and the connection closed', async () => {
      const answer = await stalled([`Authorization: Bearer ${PUBLISH_KEY}`, `Content-Length: ${MiB + 100}`], '{"to": "x", "payload": "');

      expect(status(answer)).toBe(413);
      expect(answer).toMatch(/^Connection: close\r$/im);
      expect(body(answer)).toEqual({ error: { code: 'PAYLOAD_TOO_LARGE', message: expect.stringMatching(/MAX_PUBLISH_BYTES/) } });
    });

    it('413 for a chunked body once it passes the limit, the rest not awaited, and the connection closed', async () => {
      const to = uniqueId();
      const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
      const first = chunk(`{"to": "${to}", "payload": "`) + chunk('a'.repeat(MAX_PUBLISH_BYTES)); // past the limit; no last chunk ever comes
      const answer = await stalled([`Authorization: Bearer ${PUBLISH_KEY}`, 'Transfer-Encoding: chunked'], first);

      expect(status(answer)).toBe(413);
      expect(answer).toMatch(/^Connection: close\r$/im);
      expect(await s.r.exists(`rm:users:${to}:messages`)).toBe(0);
    });

    it('a chunked body within the limit is still taken', async () => {
      const to = uniqueId();
      const response = await fetch(`${server.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${PUBLISH_KEY}` },
        body: new Blob([JSON.stringify({ to, payload: 'streamed' })]).stream(),
        duplex: 'half',
        signal: AbortSignal.timeout(10_000),
      } as RequestInit);

      expect(response.status).toBe(202);
      expect(await s.r.llen(`rm:users:${to}:messages`)).toBe(1);
    });
  });

  describe('Idempotency-Key', () => {
    it('a repeat with the same body stores nothing new and gets the first id', async () => {
      const to = uniqueId();
      const key = uniqueId('idem');
      const first = await post({ to, payload: 'once', ttl: 30 }, { idempotencyKey: key });
      const again = await post({ to, payload: 'once', ttl: 30 }, { idempotencyKey: key });

      expect(first).toEqual({ status: 202, body: { id: expect.any(String) } });
      expect(again).toEqual(first);
      expect((await queued(to)).map((m) => m.id)).toEqual([first.body.id]);
    });

    it('concurrent repeats store the message once, and all get the same id', async () => {
      const to = uniqueId();
      const key = uniqueId('idem');
      const answers = await Promise.all(Array.from({ length: 8 }, () => post({ to, payload: 'race' }, { idempotencyKey: key })));

      const ids = new Set(answers.map((answer) => answer.body.id));
      expect(answers.map((answer) => answer.status)).toEqual(Array(8).fill(202));
      expect(ids.size).toBe(1);
      expect((await queued(to)).map((m) => m.id)).toEqual([...ids]);
    });

    it('409 with another body (also to another user), storing nothing', async () => {
      const to = uniqueId();
      const other = uniqueId();
      const key = uniqueId('idem');
      await post({ to, payload: 'first' }, { idempotencyKey: key });

      for (const body of [
        { to, payload: 'second' },
        { to, payload: 'first', ttl: 5 },
        { to: other, payload: 'first' },
      ]) {
        const answer = await post(body, { idempotencyKey: key });
        expect(answer).toEqual({ status: 409, body: { error: { code: 'CONFLICT', message: expect.any(String) } } });
      }
      expect((await queued(to)).map((m) => m.payload)).toEqual(['first']);
      expect(await s.r.llen(`rm:users:${other}:messages`)).toBe(0);
    });

    it('is scoped to the API key: the same Idempotency-Key from another key is another request', async () => {
      const to = uniqueId();
      const key = uniqueId('idem');
      const first = await post({ to, payload: 'x' }, { idempotencyKey: key });
      const second = await post({ to, payload: 'x' }, { idempotencyKey: key, key: 'another-key-abcdefghijk' });

      expect(second.body.id).not.toEqual(first.body.id);
      expect(await s.r.llen(`rm:users:${to}:messages`)).toBe(2);
    });

    it('a group repeat answers the first recipients and stores nothing new, also for a member who joined since', async () => {
      const cid = uniqueId('g');
      const [a, b, late] = [uniqueId('m'), uniqueId('m'), uniqueId('m')];
      await s.r.sadd(`rm:channels:${cid}:subscribers`, a, b);
      const key = uniqueId('idem');

      const first = await post({ group: cid, payload: 'g' }, { idempotencyKey: key });
      expect(first).toEqual({ status: 202, body: { id: expect.any(String), recipients: 2 } });
      await s.r.sadd(`rm:channels:${cid}:subscribers`, late);
      expect(await post({ group: cid, payload: 'g' }, { idempotencyKey: key })).toEqual({ status: 202, body: first.body });

      expect(await s.r.llen(`rm:users:${a}:messages`)).toBe(1);
      expect(await s.r.llen(`rm:users:${b}:messages`)).toBe(1);
      expect(await s.r.llen(`rm:users:${late}:messages`)).toBe(0);
    });

    it('a group retry after a fan-out that was not recorded stores for the members who lack it only', async () => {
      const cid = uniqueId('g');
      const [a, b] = [uniqueId('m'), uniqueId('m')];
      await s.r.sadd(`rm:channels:${cid}:subscribers`, a, b);
      const key = uniqueId('idem');
      expect((await post({ group: cid, payload: 'g' }, { idempotencyKey: key })).status).toBe(202);
      // As after a crash between the members' stores and the group's record: the record is missing.
      const records = await s.r.keys('rm:idem:*');
      for (const record of records) if ((await s.r.get(record))!.includes('"recipients":2')) await s.r.del(record);
      await s.r.del(`rm:users:${b}:messages`, ...(await s.r.keys(`rm:users:${b}:idem:*`)));

      expect(await post({ group: cid, payload: 'g' }, { idempotencyKey: key })).toEqual({ status: 202, body: { id: expect.any(String), recipients: 2 } });

      expect(await s.r.llen(`rm:users:${a}:messages`)).toBe(1);
      expect(await s.r.llen(`rm:users:${b}:messages`)).toBe(1);
    });
  });

  it('a group retry after a partial store (one member unusable, then fixed) stores the rest under the same id: one id for every member', async () => {
    const cid = uniqueId('g');
    const [a, b] = [uniqueId('m'), uniqueId('m')];
    await s.r.sadd(`rm:channels:${cid}:subscribers`, a, b);
    await s.r.set(`rm:users:${b}:messages`, 'not a list'); // b's keys cannot hold messages
    const key = uniqueId('idem');

    const partial = await post({ group: cid, payload: 'g' }, { idempotencyKey: key });
    await s.r.del(`rm:users:${b}:messages`);
    const retry = await post({ group: cid, payload: 'g' }, { idempotencyKey: key });

    expect(partial.status).toBe(503);
    const [storedA] = await queued(a);
    expect(retry).toEqual({ status: 202, body: { id: storedA.id, recipients: 2 } });
    expect((await queued(b)).map((m) => m.id)).toEqual([storedA.id]);
    expect(await post({ group: cid, payload: 'g' }, { idempotencyKey: key })).toEqual(retry);
  });

  it('counts each outcome in redmessenger_http_publish_total', async () => {
    const text = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    for (const outcome of ['accepted', 'duplicate', 'bad_request', 'unauthorized', 'too_large', 'conflict']) {
      expect(Number(new RegExp(`^redmessenger_http_publish_total\\{outcome="${outcome}"\\} (\\d+)`, 'm').exec(text)?.[1])).toBeGreaterThan(0);
    }
  });
});

describe('POST /v1/messages: off, and Redis away', () => {
  it('404 while PUBLISH_API_KEYS is unset, as for any unknown route', async () => {
    const redis = await startRedis();
    const server = await startServer({ REDIS_URL: redis.url, PUBLISH_API_KEYS: '' });
    try {
      const answer = await postMessage(server.url, { to: 'x', payload: 'y' });
      const unknown = await fetch(`${server.url}/v1/nothing`, { method: 'POST', signal: AbortSignal.timeout(5000) });

      expect(answer.status).toBe(404);
      expect(unknown.status).toBe(404);
      expect(answer.body).toEqual({ statusCode: 404, error: 'Not Found', message: 'Cannot POST /v1/messages' });
    } finally {
      await server.stop();
      await redis.close();
    }
  });

  it('a key shorter than 16 characters stops the start, naming the variable and not the key', async () => {
    const server = await startServer({ REDIS_URL: 'redis://127.0.0.1:1', PUBLISH_API_KEYS: 'long-enough-key-123,short-key' }, { waitReady: false });
    const { code } = await server.exited();

    expect(code).toBe(1);
    expect(server.logs()).toMatch(/PUBLISH_API_KEYS must be a comma-separated list of keys, each at least 16 characters/);
    expect(server.logs()).not.toMatch(/short-key/);
  });

  it('503 when Redis cannot store it, within the deadline; stored once Redis is back', async () => {
    const redis = await startRedis({ restartable: true });
    const server = await startServer({ REDIS_URL: redis.url, PUBLISH_API_KEYS: PUBLISH_KEY });
    try {
      const to = uniqueId();
      await redis.stop();

      const answer = await postMessage(server.url, { to, payload: 'x' }, { timeoutMs: 8000 });

      expect(answer).toEqual({ status: 503, body: { error: { code: 'UNAVAILABLE', message: expect.any(String) } } });
      await redis.start();
      const r = redis.client();
      let stored = { status: 0 } as { status: number };
      for (let i = 0; i < 50 && stored.status !== 202; i++) {
        stored = await postMessage(server.url, { to, payload: 'x' });
        if (stored.status !== 202) await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(stored.status).toBe(202);
      expect(await r.llen(`rm:users:${to}:messages`)).toBe(1);
    } finally {
      await server.stop();
      await redis.close();
    }
  });
});
