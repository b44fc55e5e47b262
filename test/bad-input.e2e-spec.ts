/**
 * Point 6 of the contract: every bad frame gets an `error` frame and, where
 * fatal, its close code; other sockets keep working and nothing queued is lost.
 */
import { owedCount } from './support/queue-entries';
import { uniqueId } from './support/ids';
import { useServer } from './support/fixtures';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

const MAX_FRAME_BYTES = 4096;
const IDENTIFY_TIMEOUT_MS = 1000;

describe('bad input', () => {
  const s = useServer({ MAX_FRAME_BYTES: String(MAX_FRAME_BYTES), IDENTIFY_TIMEOUT_MS: String(IDENTIFY_TIMEOUT_MS) });
  const { server } = s;
  const bystanderId = uniqueId('bystander');
  let bystander: TestClient;

  beforeAll(async () => {
    bystander = await s.client({ autoAck: true }); // made in beforeAll: terminated after the suite
    await bystander.identify(bystanderId);
  });

  // After the fixture's afterEach has terminated the test's clients.
  afterEach(async () => {
    // Whatever the bad frame was, a well-behaved socket still gets its messages.
    const payload = uniqueId('still-served');
    await s.r.publish(`rm.users.${bystanderId}`, payload);
    await bystander.next((f) => f.event === 'message' && f.data.payload === payload);
  });

  const connect = () => s.client();
  const ready = async () => {
    const client = await connect();
    await client.identify(uniqueId());
    return client;
  };
  /** The contract's answer to a fatal frame: an error frame with this code, then this close code. */
  const expectRefused = async (client: TestClient, code: string, close: number) => {
    const error = await client.next((f) => f.event === 'error');
    expect(error.data).toEqual({ code, message: expect.any(String) });
    expect((await client.closed()).code).toBe(close);
  };

  describe('before ready, every bad frame is fatal (4400)', () => {
    it.each([
      ['not JSON', 'hello'],
      ['JSON that is not an object', '[1,2,3]'],
      ['no event', '{"data":{"id":"user1"}}'],
      ['no data', '{"event":"identify"}'],
      ['data that is not an object', '{"event":"identify","data":"user1"}'],
      ['an unknown event', '{"event":"subscribe","data":{}}'],
      ['an ack', '{"event":"ack","data":{"ids":[]}}'],
      ['a huge number as id', '{"event":"identify","data":{"id":1e400}}'],
      ['a nested object as id', '{"event":"identify","data":{"id":{"$gt":""}}}'],
    ])('%s', async (_what, frame) => {
      const client = await connect();
      client.sendRaw(frame);
      await expectRefused(client, expect.any(String) as unknown as string, 4400);
    });

    it.each(['', '*', '?', 'a[b', 'a:b', 'has space', 'x'.repeat(129), 'rm:users:x', '../x'])('an invalid id %j (INVALID_ID), never used in a key', async (id) => {
      const client = await connect();
      client.send('identify', { id });

      await expectRefused(client, 'INVALID_ID', 4400);
      // EXISTS, not KEYS: a glob would read '*' and '?' as patterns.
      expect(await s.r.exists(`rm:users:${id}:messages`, `rm:users:${id}:state`, `rm:users:${id}:owed`)).toBe(0);
    });

    it('an id of exactly 128 characters is accepted', async () => {
      const client = await connect();
      const id = `a${'b'.repeat(127)}`;
      expect((await client.identify(id)).data).toMatchObject({ id, queued: 0 });
    });

    it.each([[5], [null], [{}], [['t']]])('a token that is present but not a string (%j)', async (token) => {
      const client = await connect();
      client.send('identify', { id: uniqueId(), token });
      await expectRefused(client, 'BAD_FRAME', 4400);
    });

    it('a binary frame', async () => {
      const client = await connect();
      client.sendRaw(Buffer.from(JSON.stringify({ event: 'identify', data: { id: 'user1' } })), { binary: true });
      await expectRefused(client, 'BAD_FRAME', 4400);
    });

    it('invalid UTF-8', async () => {
      const client = await connect();
      client.sendRaw(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
      await expectRefused(client, 'BAD_FRAME', 4400);
    });
  });

  describe('after ready', () => {
    it('a frame that is not JSON of the {event, data} shape is fatal (4400)', async () => {
      const client = await ready();
      client.sendRaw('{"event":"ack"');
      await expectRefused(client, 'BAD_FRAME', 4400);
    });

    it('a second identify is fatal (4400)', async () => {
      const client = await ready();
      client.send('identify', { id: uniqueId() });
      await expectRefused(client, 'ALREADY_IDENTIFIED', 4400);
    });

    it('an unknown event gets UNKNOWN_EVENT and the socket stays open and served', async () => {
      const id = uniqueId();
      const client = await connect();
      await client.identify(id);

      client.send('subscribe', { channel: 'x' });
      const error = await client.next((f) => f.event === 'error');
      await s.r.publish(`rm.users.${id}`, 'still here');

      expect(error.data).toEqual({ code: 'UNKNOWN_EVENT', message: expect.any(String) });
      expect((await client.messages(1))[0].data.payload).toBe('still here');
      expect(client.isOpen).toBe(true);
    });

    it.each([[{}], [{ ids: 'x' }], [{ ids: [1, 2] }], [{ ids: null }], [{ ids: [['1']] }]])('an ack of %j gets BAD_ACK and the socket stays open', async (data) => {
      const id = uniqueId();
      const client = await connect();
      await client.identify(id);
      await s.r.publish(`rm.users.${id}`, 'owed');
      await client.messages(1);

      client.send('ack', data);
      const error = await client.next((f) => f.event === 'error');

      expect(error.data).toEqual({ code: 'BAD_ACK', message: expect.any(String) });
      expect(client.isOpen).toBe(true);
      expect(await owedCount(s.r, id)).toBe(1);
    });
  });

  it(`closes with 4408 when no identify arrives within IDENTIFY_TIMEOUT_MS`, async () => {
    const client = await connect();
    await expectRefused(client, 'IDENTIFY_TIMEOUT', 4408);
  });

  it('closes with 1009 a frame over MAX_FRAME_BYTES', async () => {
    const client = await connect();
    client.send('identify', { id: 'x'.repeat(MAX_FRAME_BYTES) });
    expect((await client.closed()).code).toBe(1009);
  });

  it('loses nothing queued when a socket of the same id misbehaves', async () => {
    const id = uniqueId();
    await s.r.publish(`rm.users.${id}`, 'precious');
    await waitFor(async () => (await s.r.llen(`rm:users:${id}:messages`)) === 1, 5000, 'the message to be queued');
    const client = await connect();
    await client.identify(id);
    await client.messages(1);

    client.sendRaw('garbage');
    await client.closed();

    await waitFor(async () => (await s.r.llen(`rm:users:${id}:messages`)) === 1, 5000, 'the message back in the queue');
    const again = await connect();
    expect((await again.identify(id)).data.queued).toBe(1);
  });

  it('refuses an upgrade on another path than WS_PATH', async () => {
    await expect(TestClient.connect(`${server.wsUrl}elsewhere`)).rejects.toThrow();
  });
});
