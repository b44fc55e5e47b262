/**
 * Logs a person (or a log shipper) can follow: LOG_FORMAT=json gives one JSON
 * object per line, the lines say what happens to messages, and payloads and
 * tokens never appear in them.
 */
import { uniqueId } from './support/ids';
import { warningsTold } from './support/logs';
import { useServer } from './support/fixtures';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

describe('logs', () => {
  const s = useServer({ LOG_FORMAT: 'json', LOG_LEVEL: 'debug' });
  const { server } = s;

  it('LOG_FORMAT=json: every line is a JSON object with level, pid, timestamp and message (Nest ConsoleLogger); payloads never appear', async () => {
    const id = uniqueId();
    const secret = `payload-${uniqueId('secret')}`;
    await s.r.publish(`rm.users.${id}`, `${secret}-queued`);
    await waitFor(async () => (await s.r.llen(`rm:users:${id}:messages`)) === 1, 5000, 'the message to be queued');
    const client = await TestClient.connect(server.wsUrl);
    await client.identify(id, 'a-token-that-must-not-be-logged');
    await client.messages(1);
    await s.r.publish(`rm.users.${id}`, `${secret}-live`);
    await client.messages(2);
    client.terminate();
    await server.waitForLog(new RegExp(`${id}: Client is no longer online, recommitting 2 messages to queue`));

    const lines = server
      .logs()
      .split('\n')
      .filter((line) => line.trim() !== '');
    const entries = lines.map((line) => JSON.parse(line));
    for (const entry of entries) {
      expect(entry).toEqual(expect.objectContaining({ level: expect.any(String), pid: expect.any(Number), timestamp: expect.any(Number), message: expect.any(String) }));
    }
    // Lines of the services name their context.
    expect(entries.find((entry) => String(entry.message).startsWith('Assigning id'))).toHaveProperty('context', expect.any(String));
    const messages = entries.map((entry) => entry.message as string);
    expect(messages).toEqual(
      expect.arrayContaining([
        `New message from channel rm.users.${id}`,
        `Client is not online, queueing message in Redis (rm:users:${id}:messages)`,
        expect.stringMatching(new RegExp(`^Assigning id ${id} to socket 127\\.0\\.0\\.1:\\d+$`)),
        `rm.users.${id} has 1 messages enqueued, purging!`,
        `${id}: Client is no longer online, recommitting 2 messages to queue`,
      ]),
    );
    expect(server.logs()).not.toContain(secret);
    expect(server.logs()).not.toContain('a-token-that-must-not-be-logged');
  });

  it("LOG_LEVEL=debug: the seed's session lines, for one identify with two queued messages and a drop mid-purge", async () => {
    const id = uniqueId();
    await s.r.publish(`rm.users.${id}`, 'Hello, world!');
    await s.r.publish(`rm.users.${id}`, 'My life is like a spicy pepper...');
    await waitFor(async () => (await s.r.llen(`rm:users:${id}:messages`)) === 2, 5000, 'both messages to be queued');
    const client = await TestClient.connect(server.wsUrl);
    await client.identify(id);
    const [first] = await client.messages(1);
    client.terminate(); // gone before acking: a drop mid-purge
    await server.waitForLog(new RegExp(`${id}: Client is no longer online, recommitting 2 messages to queue`));

    const messages = server
      .logs()
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line).message as string);
    const remote = messages.find((m) => m.startsWith(`Assigning id ${id} to socket `))!.slice(`Assigning id ${id} to socket `.length);
    expect(remote).toMatch(/^127\.0\.0\.1:\d+$/);
    const sequence = [
      `New connection ${remote} on *:${server.port}! Waiting for ID...`,
      `Assigning id ${id} to socket ${remote}`,
      `You're subscribed to rm.users.${id}!`,
      `rm.users.${id} has 2 messages enqueued, purging!`,
      `${id}: Purging message ${first.data.id}`,
      `${id}: Client is no longer online, recommitting 2 messages to queue`,
    ];
    // Each line is there, in the seed's order.
    const at = sequence.map((line) => messages.indexOf(line));
    expect(sequence.filter((_, i) => at[i] < 0)).toEqual([]);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(server.logs()).not.toContain('spicy pepper');
  });
});

describe('logs under a flood', () => {
  const s = useServer({ LOG_LEVEL: 'log' });
  const { server } = s;

  it('10,000 PUBLISHes to invalid channels: a handful of lines that count them all; every one dropped, none queued', async () => {
    const FLOOD = 10_000;
    const before = server.logs().length;
    const pipeline = s.r.pipeline();
    for (let i = 0; i < FLOOD; i++) pipeline.publish(`rm.users.flood:${i}`, 'x');
    await pipeline.exec();

    // Every line of the flood names an invalid channel, and says how many more like it it stands for.
    const lines = () =>
      server
        .logs()
        .slice(before)
        .split('\n')
        .filter((line) => line.trim() !== '');
    const told = () => warningsTold(server.logs().slice(before), /Dropping message on invalid channel/);
    await waitFor(() => told() >= FLOOD, 30_000, 'the lines to account for every dropped message');

    expect(told()).toBe(FLOOD);
    expect(lines().length).toBeLessThanOrEqual(30);
    for (const line of lines()) expect(line).toMatch(/Dropping message on invalid channel "rm\.users\.flood:\d+"/);
    const metrics = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    expect(metrics).toMatch(new RegExp(`^redmessenger_messages_dropped_total\\{reason="invalid_channel"\\} ${FLOOD}$`, 'm'));
    expect(await s.r.keys('rm:users:flood*')).toEqual([]);
    // Still routing.
    const id = uniqueId();
    await s.r.publish(`rm.users.${id}`, 'after the flood');
    await waitFor(async () => (await s.r.llen(`rm:users:${id}:messages`)) === 1, 5000, 'a valid message to be queued');
  });
});
