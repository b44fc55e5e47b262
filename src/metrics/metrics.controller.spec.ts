import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { AddressInfo } from 'node:net';
import { MetricsModule } from './metrics.module';
import { MetricsService } from './metrics.service';

/** GET /metrics over real HTTP, from applications built the way the server builds its own. */
describe('MetricsModule', () => {
  const apps: INestApplication[] = [];
  afterAll(() => Promise.all(apps.map((app) => app.close())));

  const start = async () => {
    const moduleRef = await Test.createTestingModule({ imports: [MetricsModule] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    apps.push(app);
    const url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}/metrics`;
    return { app, url, metrics: app.get(MetricsService) };
  };

  it('answers GET /metrics with the text exposition format and its content type', async () => {
    const { url, metrics } = await start();
    metrics.identified('ok');

    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    const text = await res.text();

    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(text).toMatch(/^redmessenger_identify_total\{outcome="ok"\} 1$/m);
    expect(text).toMatch(/^# TYPE nodejs_eventloop_lag_seconds gauge$/m);
  });

  it('gives each application in the process its own registry (the same service everywhere inside one)', async () => {
    const first = await start();
    const second = await start();
    first.metrics.routed(2);

    const [a, b] = await Promise.all([first.url, second.url].map(async (url) => (await fetch(url, { signal: AbortSignal.timeout(5000) })).text()));

    expect(a).toMatch(/^redmessenger_messages_routed_total 2$/m);
    expect(b).toMatch(/^redmessenger_messages_routed_total 0$/m);
    expect(first.app.get(MetricsService)).toBe(first.metrics);
    expect(first.metrics).not.toBe(second.metrics);
  });
});
