import type { INestApplication } from '@nestjs/common';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';

/**
 * Routes that belong on the internal network (scrapes, docs, admin): with
 * INTERNAL_PORT set they are answered there only. A new internal route only needs
 * its prefix here.
 */
export const INTERNAL_PATH_PREFIXES: readonly string[] = ['/metrics', '/docs', '/docs-json', '/docs-yaml', '/v1/users'];

/** Marks a request that arrived on the internal port. */
const INTERNAL = Symbol('redmessenger.internal-port');

/**
 * Whether `url` (a request's path and query) falls under one of `prefixes`,
 * compared as Express routes it: case-insensitive, with or without a trailing
 * slash. Repeated slashes and %-escapes are undone first, so a spelling Express
 * would not route either is still kept off the public port.
 */
export function isInternalPath(url: string, prefixes: readonly string[] = INTERNAL_PATH_PREFIXES): boolean {
  let path = (url.split('?', 1)[0] ?? '').replace(/\/+/g, '/');
  try {
    path = decodeURIComponent(path);
  } catch {
    // a broken %-escape: match on the raw text
  }
  path = path.toLowerCase().replace(/\/+$/, '') || '/';
  return prefixes.some((prefix) => path === prefix || path.startsWith(`${prefix}/`));
}

/**
 * Splits the application's routes between its public port and INTERNAL_PORT.
 *
 * How: one Express application answers both ports. listenInternal() opens a
 * plain node HTTP server on INTERNAL_PORT that hands every request to the same
 * Express handler after marking it; this middleware, installed before any route,
 * answers 404 to an internal path that came in without the mark and to any other
 * path that came in with it. So routes, providers and metrics are shared (no
 * second Nest application), and the WebSocket stays on the public port only (the
 * internal server has no upgrade handler). Call it before routes are added (before
 * SwaggerModule.setup and listen).
 */
export function separateInternalRoutes(app: INestApplication, prefixes: readonly string[] = INTERNAL_PATH_PREFIXES): void {
  app.use((req: IncomingMessage, res: ServerResponse, next: () => void) => {
    const cameInternal = (req as IncomingMessage & { [INTERNAL]?: boolean })[INTERNAL] === true;
    if (isInternalPath(req.url ?? '/', prefixes) === cameInternal) return next();
    // The body Nest gives any unknown route, so the route's existence does not show.
    const body = JSON.stringify({ message: `Cannot ${req.method} ${(req.url ?? '/').split('?', 1)[0]}`, error: 'Not Found', statusCode: 404 });
    res.writeHead(404, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
}

/** Serves the application's internal routes on `port`; resolves once listening (rejects if it cannot, e.g. EADDRINUSE). */
export function listenInternal(app: INestApplication, port: number, host?: string): Promise<http.Server> {
  const handle = app.getHttpAdapter().getInstance() as (req: IncomingMessage, res: ServerResponse) => void;
  const server = http.createServer((req, res) => {
    (req as IncomingMessage & { [INTERNAL]?: boolean })[INTERNAL] = true;
    handle(req, res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
