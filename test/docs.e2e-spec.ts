/**
 * OpenAPI: Swagger UI at /docs and the document at /docs-json (DOCS, default on),
 * and the committed openapi.json (`npm run openapi`) is that same document.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { useRedis, useServer } from './support/fixtures';
import { startServer } from './support/server';

const get = (url: string) => fetch(url, { signal: AbortSignal.timeout(5000) });

describe('docs', () => {
  const shared = useRedis();

  describe('DOCS unset (on)', () => {
    const { server } = useServer({}, { on: shared });

    it('serves the OpenAPI document at /docs-json with the health and metrics routes', async () => {
      const res = await get(`${server.url}/docs-json`);
      expect(res.status).toBe(200);
      const document = (await res.json()) as any;

      expect(document.openapi).toMatch(/^3\./);
      expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/health', '/health/live', '/health/ready', '/metrics']));
      expect(Object.keys(document.paths['/health/ready'].get.responses)).toEqual(expect.arrayContaining(['200', '503']));
      expect(Object.keys(document.paths['/metrics'].get.responses['200'].content)).toEqual([expect.stringMatching(/^text\/plain/)]);
    });

    it('serves Swagger UI at /docs', async () => {
      const res = await get(`${server.url}/docs`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/text\/html/);
      expect(await res.text()).toContain('swagger-ui');
    });

    it('matches the committed openapi.json (regenerate it with `npm run openapi`)', async () => {
      const served = await (await get(`${server.url}/docs-json`)).json();
      const committed = JSON.parse(readFileSync(path.resolve(__dirname, '..', 'openapi.json'), 'utf8'));

      expect(served).toEqual(committed);
    });
  });

  it('DOCS=false: /docs and /docs-json answer 404', async () => {
    const server = await startServer({ REDIS_URL: shared.redis.url, DOCS: 'false' });
    try {
      expect((await get(`${server.url}/docs`)).status).toBe(404);
      expect((await get(`${server.url}/docs-json`)).status).toBe(404);
      expect((await get(`${server.url}/health`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });
});
