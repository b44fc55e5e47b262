/**
 * INTERNAL_PORT: /metrics and /docs move to a port of their own, the public port
 * keeps the WebSocket and /health; unset, everything stays on PORT.
 */
import { uniqueId } from './support/ids';
import { freePort } from './support/proc';
import { useRedis } from './support/fixtures';
import { startServer, type TestServer } from './support/server';
import { TestClient } from './support/ws-client';

const get = async (url: string) => {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
};

describe('INTERNAL_PORT', () => {
  const shared = useRedis();

  describe('set', () => {
    let server: TestServer;
    let internal: string;

    beforeAll(async () => {
      const internalPort = await freePort();
      internal = `http://127.0.0.1:${internalPort}`;
      server = await startServer({ REDIS_URL: shared.redis.url, INTERNAL_PORT: String(internalPort) });
      await server.waitForLog(/Internal routes .* on port \d+ only/);
    });

    afterAll(async () => {
      await server?.stop();
    });

    it('serves /metrics and the docs on INTERNAL_PORT only', async () => {
      expect((await get(`${server.url}/metrics`)).status).toBe(404);
      const metrics = await get(`${internal}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.body).toContain('redmessenger_connections');

      expect((await get(`${server.url}/docs-json`)).status).toBe(404);
      expect((await get(`${server.url}/docs`)).status).toBe(404);
      expect((await get(`${internal}/docs-json`)).status).toBe(200);
    });

    it('refuses other spellings of an internal path on the public port', async () => {
      for (const path of ['/METRICS', '/metrics/', '/Metrics?x=1', '/docs/swagger-ui-init.js']) {
        expect([path, (await get(`${server.url}${path}`)).status]).toEqual([path, 404]);
      }
    });

    it('keeps /health and the WebSocket on PORT, and neither on INTERNAL_PORT', async () => {
      for (const path of ['/health', '/health/live', '/health/ready']) {
        expect([path, (await get(`${server.url}${path}`)).status]).toEqual([path, 200]);
        expect([path, (await get(`${internal}${path}`)).status]).toEqual([path, 404]);
      }

      const client = await TestClient.connect(server.wsUrl);
      try {
        expect((await client.identify(uniqueId())).event).toBe('ready');
      } finally {
        client.terminate();
      }
      await expect(TestClient.connect(internal.replace('http:', 'ws:') + '/')).rejects.toThrow(/failed/);
    });
  });

  it('unset: /metrics and the docs are on PORT', async () => {
    const server = await startServer({ REDIS_URL: shared.redis.url });
    try {
      expect((await get(`${server.url}/metrics`)).status).toBe(200);
      expect((await get(`${server.url}/docs-json`)).status).toBe(200);
      expect((await get(`${server.url}/health`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  it.each([
    ['equal to PORT', 'same', /INTERNAL_PORT must differ from PORT/],
    ['not a port', 'ninety', /INTERNAL_PORT must be an integer port/],
  ])('refuses an INTERNAL_PORT %s, naming the variable', async (_, value, message) => {
    const port = await freePort();
    const server = await startServer({ REDIS_URL: 'redis://127.0.0.1:1', PORT: String(port), INTERNAL_PORT: value === 'same' ? String(port) : value }, { waitReady: false });

    expect((await server.exited()).code).not.toBe(0);
    expect(server.logs()).toMatch(message);
  });
});
