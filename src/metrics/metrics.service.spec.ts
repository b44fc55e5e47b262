import { REDMESSENGER_METRICS } from '../../test/support/metric-names';
import { register as globalRegistry } from 'prom-client';
import { BUSIEST_QUEUES, DROP_CAUSES, DROP_REASONS, IDENTIFY_OUTCOMES, identifyOutcomeOf, REDIS_COMMANDS } from './metrics.constants';
import { MetricsService } from './metrics.service';

/** The value of one counter or gauge series with exactly these labels (undefined when it does not exist). */
async function value(metrics: MetricsService, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const keys = Object.keys(labels);
  const found = values.find((v) => Object.keys(v.labels).length === keys.length && keys.every((k) => String(v.labels[k]) === labels[k]));
  return found?.value;
}

/** A histogram's _count and _sum, and its cumulative bucket counts by `le`. */
async function histogram(metrics: MetricsService, name: string, labels: Record<string, string> = {}) {
  const metric = metrics.registry.getSingleMetric(name)!;
  const { values } = await metric.get();
  const matches = (v: (typeof values)[number]) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want);
  const of = (suffix: string) => values.filter((v) => (v as { metricName?: string }).metricName === `${name}${suffix}` && matches(v));
  return {
    count: of('_count')[0]?.value,
    sum: of('_sum')[0]?.value,
    buckets: Object.fromEntries(of('_bucket').map((v) => [String(v.labels.le), v.value])),
  };
}

/** Label values present for a metric. */
async function labelValues(metrics: MetricsService, name: string, label: string): Promise<string[]> {
  const { values } = await metrics.registry.getSingleMetric(name)!.get();
  return [
    ...new Set(
      values
        .map((v) => v.labels[label])
        .filter((v) => v !== undefined)
        .map(String),
    ),
  ].sort();
}

describe('MetricsService', () => {
  let metrics: MetricsService;
  beforeEach(() => {
    metrics = new MetricsService();
  });

  it('uses a registry of its own, never the global one, so two services do not clash', async () => {
    const other = new MetricsService();
    metrics.routed(3);

    expect(metrics.registry).not.toBe(globalRegistry);
    expect(globalRegistry.getSingleMetric('redmessenger_messages_routed_total')).toBeUndefined();
    expect(await value(metrics, 'redmessenger_messages_routed_total')).toBe(3);
    expect(await value(other, 'redmessenger_messages_routed_total')).toBe(0);
  });

  it('renders the text exposition format with every RedMessenger metric and the default Node.js metrics', async () => {
    const text = await metrics.render();

    expect(metrics.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    for (const [name, type] of [...REDMESSENGER_METRICS, ['nodejs_eventloop_lag_seconds', 'gauge'], ['process_cpu_seconds_total', 'counter'], ['nodejs_heap_size_used_bytes', 'gauge']]) {
      expect(text).toContain(`# TYPE ${name} ${type}\n`);
    }
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(text).toMatch(/^redmessenger_messages_routed_total 0$/m);
  });

  it('starts every bounded series at 0, so they exist before their first event', async () => {
    expect(await labelValues(metrics, 'redmessenger_identify_total', 'outcome')).toEqual([...IDENTIFY_OUTCOMES].sort());
    expect(await labelValues(metrics, 'redmessenger_messages_dropped_total', 'reason')).toEqual([...DROP_REASONS].sort());
    expect(await labelValues(metrics, 'redmessenger_redis_command_duration_seconds', 'command')).toEqual([...REDIS_COMMANDS].sort());
    for (const outcome of IDENTIFY_OUTCOMES) expect(await value(metrics, 'redmessenger_identify_total', { outcome })).toBe(0);
    // The drop names are composed from one list: the label values (and the public DropCause) stay these.
    expect(DROP_REASONS).toEqual(['overflow', 'rejected', 'invalid_channel', 'invalid_member', 'overload', 'fenced', 'unusable_keys']);
    expect(DROP_CAUSES).toEqual(['overflow', 'rejected', 'expired']);
    expect((await histogram(metrics, 'redmessenger_redis_command_duration_seconds', { command: 'route' })).count).toBe(0);
  });

  describe('connections', () => {
    it('counts open and identified sockets', async () => {
      metrics.connectionOpened();
      metrics.connectionOpened();
      metrics.connectionOpened();
      metrics.identified('ok');
      metrics.identified('ok');
      metrics.connectionClosed();
      metrics.unidentified();

      expect(await value(metrics, 'redmessenger_connections')).toBe(2);
      expect(await value(metrics, 'redmessenger_identified_connections')).toBe(1);
      expect(await value(metrics, 'redmessenger_identify_total', { outcome: 'ok' })).toBe(2);
    });

    it('never goes below zero on an unmatched close', async () => {
      metrics.connectionClosed();
      metrics.unidentified();
      metrics.connectionOpened();

      expect(await value(metrics, 'redmessenger_connections')).toBe(1);
      expect(await value(metrics, 'redmessenger_identified_connections')).toBe(0);
    });
  });

  describe('identified(outcome)', () => {
    it('counts each outcome; only ok and replaced count the socket as identified', async () => {
      for (const outcome of IDENTIFY_OUTCOMES) metrics.identified(outcome);
      metrics.identified('unauthorized');

      expect(await value(metrics, 'redmessenger_identify_total', { outcome: 'unauthorized' })).toBe(2);
      expect(await value(metrics, 'redmessenger_identify_total', { outcome: 'rate_limited' })).toBe(1);
      expect(await value(metrics, 'redmessenger_identify_total', { outcome: 'replaced' })).toBe(1);
      expect(await value(metrics, 'redmessenger_identified_connections')).toBe(2);
    });

    it('maps the error codes that end an identify to outcomes, and no others', () => {
      expect(identifyOutcomeOf('INVALID_ID')).toBe('invalid');
      expect(identifyOutcomeOf('UNAUTHORIZED')).toBe('unauthorized');
      expect(identifyOutcomeOf('IDENTIFY_TIMEOUT')).toBe('timeout');
      expect(identifyOutcomeOf('UNAVAILABLE')).toBe('unavailable');
      expect(identifyOutcomeOf('TOO_MANY_ATTEMPTS')).toBe('rate_limited');
      for (const code of ['BAD_FRAME', 'NOT_IDENTIFIED', 'SERVER_FULL', 'REPLACED', 'toString', '__proto__']) {
        expect(identifyOutcomeOf(code)).toBeUndefined();
      }
    });

    it("records an unknown outcome as 'other', whatever the caller passes", async () => {
      metrics.identified('user-1234' as never);
      metrics.identified(undefined as never);
      metrics.identified({ toString: () => 'ok' } as never);

      expect(await value(metrics, 'redmessenger_identify_total', { outcome: 'other' })).toBe(3);
      expect(await labelValues(metrics, 'redmessenger_identify_total', 'outcome')).toEqual([...IDENTIFY_OUTCOMES, 'other'].sort());
      expect(await value(metrics, 'redmessenger_identified_connections')).toBe(0);
    });
  });

  describe('message counters', () => {
    it('add n, one by default', async () => {
      metrics.routed(5);
      metrics.routed();
      metrics.delivered(4);
      metrics.queued(2);
      metrics.acked(3);
      metrics.requeued(7);
      metrics.expired(1);
      metrics.dropped('overflow', 2);
      metrics.dropped('invalid_channel');

      expect(await value(metrics, 'redmessenger_messages_routed_total')).toBe(6);
      expect(await value(metrics, 'redmessenger_messages_delivered_total')).toBe(4);
      expect(await value(metrics, 'redmessenger_messages_queued_total')).toBe(2);
      expect(await value(metrics, 'redmessenger_messages_acked_total')).toBe(3);
      expect(await value(metrics, 'redmessenger_messages_requeued_total')).toBe(7);
      expect(await value(metrics, 'redmessenger_messages_expired_total')).toBe(1);
      expect(await value(metrics, 'redmessenger_messages_dropped_total', { reason: 'overflow' })).toBe(2);
      expect(await value(metrics, 'redmessenger_messages_dropped_total', { reason: 'invalid_channel' })).toBe(1);
      expect(await value(metrics, 'redmessenger_messages_dropped_total', { reason: 'rejected' })).toBe(0);
    });

    it('ignore zero, negative and non-numeric counts instead of throwing', async () => {
      expect(() => {
        metrics.routed(0);
        metrics.delivered(-3);
        metrics.queued(Number.NaN);
        metrics.acked(Number.POSITIVE_INFINITY);
        metrics.requeued('2' as never);
        metrics.dropped('overflow', -1);
      }).not.toThrow();

      for (const name of ['routed', 'delivered', 'queued', 'acked', 'requeued']) {
        expect(await value(metrics, `redmessenger_messages_${name}_total`)).toBe(0);
      }
      expect(await value(metrics, 'redmessenger_messages_dropped_total', { reason: 'overflow' })).toBe(0);
    });

    it("records an unknown drop reason as 'other'", async () => {
      metrics.dropped('rm.users.some-user' as never, 2);

      expect(await value(metrics, 'redmessenger_messages_dropped_total', { reason: 'other' })).toBe(2);
      expect(await labelValues(metrics, 'redmessenger_messages_dropped_total', 'reason')).toEqual([...DROP_REASONS, 'other'].sort());
    });
  });

  describe('acked(n, latencies)', () => {
    it('observes each latency in delivery_latency_seconds, in buckets from 1 ms to 60 s', async () => {
      metrics.acked(4, [0.0005, 0.02, 3, 45]);

      const h = await histogram(metrics, 'redmessenger_delivery_latency_seconds');
      expect(await value(metrics, 'redmessenger_messages_acked_total')).toBe(4);
      expect(h.count).toBe(4);
      expect(h.sum).toBeCloseTo(48.0205, 6);
      expect(h.buckets['0.001']).toBe(1);
      expect(h.buckets['0.025']).toBe(2);
      expect(h.buckets['5']).toBe(3);
      expect(h.buckets['60']).toBe(4);
      expect(h.buckets['+Inf']).toBe(4);
    });

    it('counts a negative latency (clocks apart) as 0 and skips values that are not numbers', async () => {
      metrics.acked(3, [-2, Number.NaN, 'x' as never]);

      const h = await histogram(metrics, 'redmessenger_delivery_latency_seconds');
      expect(h.count).toBe(1);
      expect(h.sum).toBe(0);
    });
  });

  describe('timeRedis(command, promise)', () => {
    it('hands the result through and observes the duration under the command', async () => {
      const result = await metrics.timeRedis('ack', new Promise((resolve) => setTimeout(() => resolve('OK'), 20)));

      const h = await histogram(metrics, 'redmessenger_redis_command_duration_seconds', { command: 'ack' });
      expect(result).toBe('OK');
      expect(h.count).toBe(1);
      expect(h.sum).toBeGreaterThan(0);
      expect((await histogram(metrics, 'redmessenger_redis_command_duration_seconds', { command: 'route' })).count).toBe(0);
    });

    it('rethrows a failure unchanged, and times it too', async () => {
      const error = new Error('NOSCRIPT');

      await expect(metrics.timeRedis('route', Promise.reject(error))).rejects.toBe(error);
      expect((await histogram(metrics, 'redmessenger_redis_command_duration_seconds', { command: 'route' })).count).toBe(1);
    });

    it('takes a function that starts the call, even one that throws at once', async () => {
      expect(await metrics.timeRedis('read', async () => [1, 2])).toEqual([1, 2]);
      await expect(
        metrics.timeRedis('shards', () => {
          throw new Error('sync');
        }),
      ).rejects.toThrow('sync');

      expect((await histogram(metrics, 'redmessenger_redis_command_duration_seconds', { command: 'read' })).count).toBe(1);
      expect((await histogram(metrics, 'redmessenger_redis_command_duration_seconds', { command: 'shards' })).count).toBe(1);
    });

    it("records an unknown command as 'other'", async () => {
      await metrics.timeRedis('HGETALL rm:users:x' as never, Promise.resolve(1));

      expect((await histogram(metrics, 'redmessenger_redis_command_duration_seconds', { command: 'other' })).count).toBe(1);
      expect(await labelValues(metrics, 'redmessenger_redis_command_duration_seconds', 'command')).toEqual([...REDIS_COMMANDS].sort());
    });
  });

  describe('setBusiestQueues(list)', () => {
    const depths = async () => {
      const { values } = await metrics.registry.getSingleMetric('redmessenger_queue_depth')!.get();
      return Object.fromEntries(values.map((v) => [String(v.labels.rank), v.value]));
    };
    const ages = async () => {
      const { values } = await metrics.registry.getSingleMetric('redmessenger_queue_oldest_age_seconds')!.get();
      return Object.fromEntries(values.map((v) => [String(v.labels.rank), v.value]));
    };

    it('reports the deepest queues by rank, "1" the deepest, never more than 10', async () => {
      const list = Array.from({ length: 15 }, (_, i) => ({ depth: i + 1, oldestAgeSeconds: (i + 1) * 10 }));

      metrics.setBusiestQueues(list);

      expect(Object.keys(await depths()).sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: BUSIEST_QUEUES }, (_, i) => String(i + 1)));
      expect((await depths())['1']).toBe(15);
      expect((await ages())['1']).toBe(150);
      expect((await depths())['10']).toBe(6);
      expect((await ages())['10']).toBe(60);
    });

    it('removes the ranks a shorter list no longer fills', async () => {
      metrics.setBusiestQueues([
        { depth: 9, oldestAgeSeconds: 1 },
        { depth: 8, oldestAgeSeconds: 2 },
        { depth: 7, oldestAgeSeconds: 3 },
      ]);
      metrics.setBusiestQueues([{ depth: 4, oldestAgeSeconds: 30 }]);

      expect(await depths()).toEqual({ '1': 4 });
      expect(await ages()).toEqual({ '1': 30 });
      expect(await metrics.render()).not.toMatch(/redmessenger_queue_depth\{rank="2"\}/);

      metrics.setBusiestQueues([]);
      expect(await depths()).toEqual({});
    });

    it('keeps user ids out of its labels and ignores entries without a usable depth', async () => {
      metrics.setBusiestQueues([{ depth: 3, oldestAgeSeconds: Number.NaN, user: 'alice' } as never, { depth: Number.NaN, oldestAgeSeconds: 1 }, { depth: -1, oldestAgeSeconds: -5 }, null as never]);

      expect(await depths()).toEqual({ '1': 3, '2': 0 });
      expect(await ages()).toEqual({ '1': 0, '2': 0 });
      expect(await metrics.render()).not.toContain('alice');
    });

    it('does not throw on something that is not a list', () => {
      expect(() => metrics.setBusiestQueues(undefined as never)).not.toThrow();
    });
  });
});
