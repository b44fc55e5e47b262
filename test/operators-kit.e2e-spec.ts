/**
 * The operators' kit (deploy/): every metric the Grafana dashboard and the Prometheus
 * alert rules name is one the built server exports on GET /metrics, and the rules pass
 * `promtool check rules` where promtool is installed (Debian: apt-get install prometheus).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { REDMESSENGER_METRICS } from './support/metric-names';
import { useServer } from './support/fixtures';

const ROOT = path.resolve(__dirname, '..');
const DASHBOARD = path.join(ROOT, 'deploy/grafana/redmessenger.json');
const RULES = path.join(ROOT, 'deploy/prometheus/alerts.yml');

/** PromQL's (and Grafana's label_values) words that are not metric names. */
const PROMQL_WORDS = new Set(
  (
    'sum min max avg count group stddev stdvar topk bottomk quantile count_values rate irate increase delta idelta deriv ' +
    'predict_linear histogram_quantile clamp clamp_min clamp_max abs absent absent_over_time avg_over_time max_over_time ' +
    'min_over_time sum_over_time count_over_time last_over_time changes resets time timestamp vector scalar label_replace ' +
    'label_join round ceil floor sort sort_desc and or unless by without on ignoring group_left group_right offset bool'
  ).split(' '),
);

/** The metric names a PromQL expression reads. */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/label_values\(([^,)]+)(,[^)]*)?\)/g, '$1') // Grafana: label_values(metric, label)
    .replace(/"(?:[^"\\]|\\.)*"/g, '') // strings
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\[[^\]]*\]/g, '') // ranges
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ''); // label lists
  const words = bare.match(/[A-Za-z_:][A-Za-z0-9_:]*/g) ?? [];
  return [...new Set(words.filter((word) => !PROMQL_WORDS.has(word) && !/^e\d*$/.test(word)))];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8'));
const rules = parse(readFileSync(RULES, 'utf8'));
const dashboardExprs: string[] = [
  ...dashboard.panels.flatMap((panel: { targets?: Array<{ expr: string }> }) => (panel.targets ?? []).map((t) => t.expr)),
  ...dashboard.templating.list.filter((v: { type: string }) => v.type === 'query').map((v: { definition: string }) => v.definition),
];
const ruleExprs: string[] = rules.groups.flatMap((group: { rules: Array<{ expr: string }> }) => group.rules.map((rule) => rule.expr));

describe("the operators' kit", () => {
  const { server } = useServer({ LOG_LEVEL: 'warn' });
  /** `# TYPE` of every metric the server exports, by name. */
  let exported: Map<string, string>;

  beforeAll(async () => {
    const res = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) });
    expect(res.status).toBe(200);
    exported = new Map([...(await res.text()).matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
  });

  /** A sample name as exported: a histogram's _bucket, _sum and _count are its own. */
  const isExported = (name: string): boolean => {
    if (exported.has(name)) return true;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return base !== name && exported.get(base) === 'histogram';
  };

  it('reads the expressions it checks (the extractor finds the names a person sees)', () => {
    expect(metricNames('sum by (instance) (rate(redmessenger_messages_delivered_total{instance=~"$instance"}[$__rate_interval]))')).toEqual(['redmessenger_messages_delivered_total']);
    expect(metricNames('max(redmessenger_inbox_lag) > 1000 and max(deriv(redmessenger_inbox_lag[10m])) > 0.8 * 268435456')).toEqual(['redmessenger_inbox_lag']);
    expect(metricNames('label_values(redmessenger_connections, instance)')).toEqual(['redmessenger_connections']);
    expect(dashboardExprs.length).toBeGreaterThanOrEqual(12);
    expect(ruleExprs.length).toBeGreaterThanOrEqual(6);
  });

  it('the dashboard names only metrics that GET /metrics exports', () => {
    const names = [...new Set(dashboardExprs.flatMap(metricNames))];
    expect(names.filter((name) => !isExported(name))).toEqual([]);
    // What the dashboard is for: delivery, queues, owed, sockets, routing, Redis time, HTTP and inbox.
    for (const needed of [
      'redmessenger_messages_delivered_total',
      'redmessenger_messages_queued_total',
      'redmessenger_queue_oldest_age_seconds',
      'redmessenger_messages_acked_total',
      'redmessenger_connections',
      'redmessenger_route_buffer_bytes',
      'redmessenger_subscriber_disconnects_total',
      'redmessenger_redis_command_duration_seconds_bucket',
      'redmessenger_http_publish_total',
      'redmessenger_inbox_entries_total',
      'redmessenger_inbox_lag',
    ]) {
      expect([needed, names.includes(needed)]).toEqual([needed, true]);
    }
  });

  it("the alert rules name only metrics that GET /metrics exports (and Prometheus's own `up`)", () => {
    const names = [...new Set(ruleExprs.flatMap(metricNames))].filter((name) => name !== 'up');
    expect(names.filter((name) => !isExported(name))).toEqual([]);
    const alerts = rules.groups.flatMap((group: { rules: Array<{ alert: string }> }) => group.rules.map((rule) => rule.alert));
    for (const alert of ['RedisDown', 'SubscriberCut', 'BacklogAgeRising', 'RouteBufferNearFull', 'InstanceMissing', 'InboxLag']) {
      expect(alerts).toContain(`RedMessenger${alert}`);
    }
  });

  it('every metric of metric-names.ts is exported, so the kit can rely on the list', () => {
    expect(REDMESSENGER_METRICS.filter(([name, type]) => exported.get(name) !== type)).toEqual([]);
  });

  it('promtool check rules passes (skipped with a reason when promtool is not installed)', async () => {
    const result = await promisify(execFile)('promtool', ['check', 'rules', RULES], { timeout: 30_000 }).catch((error: NodeJS.ErrnoException & { stdout?: string; stderr?: string }) => error);
    if ((result as NodeJS.ErrnoException).code === 'ENOENT') {
      console.info('promtool check rules: skipped, promtool is not installed (Debian: apt-get install prometheus)');
      return;
    }
    expect(result).toEqual(expect.objectContaining({ stdout: expect.stringMatching(/SUCCESS: \d+ rules found/) }));
  });
});
