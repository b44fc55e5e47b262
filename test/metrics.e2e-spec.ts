/**
 * GET /metrics of the built server, through real sockets and a real Redis: what one
 * identify, one PUBLISH and one ack do to the counters, and the rest of the metrics'
 * life (queueing for an offline user, drops, refused identifies, closes).
 *
 * Needs MetricsModule imported by RedMessengerModule and the services calling
 * MetricsService (see src/metrics/metrics.service.ts); fails until then.
 */
import { uniqueId } from './support/ids';
import { useServer } from './support/fixtures';
import { waitFor } from './support/wait';
import { REDMESSENGER_METRICS } from './support/metric-names';

type Samples = Map<string, number>;

/** Every sample of the exposition text, by `name{labels}` exactly as written. */
function parse(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

describe('GET /metrics', () => {
  const s = useServer({ IDENTIFY_TIMEOUT_MS: '1500' });
  const { server } = s;

  // After the fixture's afterEach has terminated the test's clients: the next test starts from
  // no open socket, so its gauges start at 0.
  afterEach(async () => {
    await waitFor(async () => (await scrape()).get('redmessenger_connections') === 0, 5000, 'redmessenger_connections to be back to 0');
  });

  const scrape = async (): Promise<Samples> => {
    const res = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) });
    if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
    return parse(await res.text());
  };

  /**
   * Waits (bounded) until every named sample has the expected value, `before` + delta
   * when a baseline is given; on timeout, fails showing expected and actual values.
   */
  const expectSamples = async (expected: Record<string, number>, before?: Samples, timeoutMs = 5000) => {
    const want = Object.fromEntries(Object.entries(expected).map(([name, v]) => [name, (before?.get(name) ?? 0) + v]));
    let actual: Record<string, number | undefined> = {};
    try {
      await waitFor(
        async () => {
          const now = await scrape();
          actual = Object.fromEntries(Object.keys(want).map((name) => [name, now.get(name)]));
          return Object.keys(want).every((name) => actual[name] === want[name]);
        },
        timeoutMs,
        'the metrics to reach their expected values',
      );
    } catch {
      expect(actual).toEqual(want); // fails, naming the samples that differ
    }
  };

  const connect = () => s.client();

  it('counts one identify, one published message and its ack', async () => {
    const id = uniqueId();
    const client = await connect();
    await client.identify(id);

    await s.r.publish(`rm.users.${id}`, 'hello');
    const [message] = await client.messages(1);
    client.ack([message.data.id]);

    await expectSamples({
      'redmessenger_identify_total{outcome="ok"}': 1,
      redmessenger_messages_routed_total: 1,
      redmessenger_messages_delivered_total: 1,
      redmessenger_messages_queued_total: 0,
      redmessenger_messages_acked_total: 1,
      redmessenger_delivery_latency_seconds_count: 1,
      redmessenger_connections: 1,
      redmessenger_identified_connections: 1,
    });
    const samples = await scrape();
    expect(samples.get('redmessenger_redis_command_duration_seconds_count{command="route"}')).toBeGreaterThanOrEqual(1);
    expect(samples.get('redmessenger_redis_command_duration_seconds_count{command="ack"}')).toBeGreaterThanOrEqual(1);
    expect(samples.get('redmessenger_delivery_latency_seconds_bucket{le="60"}')).toBe(1);
  });

  it('counts a message for an offline user as queued, and as delivered once the user comes', async () => {
    const id = uniqueId();
    const before = await scrape();

    await s.r.publish(`rm.users.${id}`, 'while you were away');
    await expectSamples({ redmessenger_messages_routed_total: 1, redmessenger_messages_queued_total: 1, redmessenger_messages_delivered_total: 0 }, before);

    const client = await connect();
    expect((await client.identify(id)).data.queued).toBe(1);
    await client.messages(1);
    await expectSamples({ redmessenger_messages_delivered_total: 1, redmessenger_messages_routed_total: 1 }, before);
  });

  it('counts a PUBLISH to an invalid channel as dropped, never as routed', async () => {
    const before = await scrape();

    await s.r.publish('rm.users.-not-an-id', 'lost');

    await expectSamples({ 'redmessenger_messages_dropped_total{reason="invalid_channel"}': 1, redmessenger_messages_routed_total: 0 }, before);
  });

  it('counts refused identifies by outcome: an invalid id, no identify in time', async () => {
    const before = await scrape();

    const invalid = await connect();
    await expect(invalid.identify('-bad id-')).rejects.toThrow(/INVALID_ID/);
    const silent = await connect();
    expect((await silent.closed(5000)).code).toBe(4408);

    await expectSamples(
      {
        'redmessenger_identify_total{outcome="invalid"}': 1,
        'redmessenger_identify_total{outcome="timeout"}': 1,
        'redmessenger_identify_total{outcome="ok"}': 0,
        redmessenger_identified_connections: 0,
      },
      before,
    );
  });

  it('takes closed sockets off the gauges and counts unacked messages given back as requeued', async () => {
    const id = uniqueId();
    const before = await scrape();
    const client = await connect();
    await client.identify(id);
    await s.r.publish(`rm.users.${id}`, 'never acked');
    await client.messages(1);
    await expectSamples({ redmessenger_connections: 1, redmessenger_identified_connections: 1 });

    await client.close();

    await expectSamples({ redmessenger_connections: 0, redmessenger_identified_connections: 0 });
    await expectSamples({ redmessenger_messages_requeued_total: 1, redmessenger_messages_acked_total: 0 }, before);
    await waitFor(async () => (await s.r.llen(`rm:users:${id}:messages`)) === 1, 5000, 'the message back in the queue');
  });

  it('answers in the text exposition format, with every RedMessenger metric and the default Node.js metrics', async () => {
    const res = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) });
    const text = await res.text();

    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    for (const [name, type] of [...REDMESSENGER_METRICS, ['nodejs_eventloop_lag_seconds', 'gauge'], ['process_cpu_user_seconds_total', 'counter'], ['process_resident_memory_bytes', 'gauge']]) {
      expect(text).toContain(`# TYPE ${name} ${type}\n`);
    }
    const samples = parse(text);
    expect(samples.get('nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
    // Bounded label sets: never a user id in a label.
    for (const name of samples.keys()) expect(name).not.toMatch(/u-\d+-/);
  });
});
