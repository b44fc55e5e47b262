import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Swagger UI at /docs, the document at /docs-json (and /docs-yaml). */
export const DOCS_PATH = 'docs';

/** The package's version (package.json sits two levels above both src/docs and dist/docs). */
const version = (): string => JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')).version;

/** The OpenAPI document of the application's HTTP routes; needs no Redis and no listening server. */
export function buildOpenApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('RedMessenger')
    .setDescription('The HTTP routes of RedMessenger. Messages themselves travel as Redis PUBLISH and WebSocket frames (see docs/protocol.md).')
    .setVersion(version())
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'key', description: 'POST and DELETE /v1/messages: one of PUBLISH_API_KEYS; GET /v1/users/<id>: one of ADMIN_API_KEYS' })
    .build();
  return SwaggerModule.createDocument(app, config);
}

/** Serves the docs; the document is built on the first request, once every route is registered. */
export function useDocs(app: INestApplication): void {
  SwaggerModule.setup(DOCS_PATH, app, () => buildOpenApiDocument(app));
}
