// `npm run openapi`: writes openapi.json (the HTTP routes' OpenAPI document) at the
// repository root from the built application, without listening and without Redis:
// `preview: true` builds the module graph but instantiates no provider, so nothing
// connects anywhere.
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { NestFactory } = require('@nestjs/core');
const { AppModule } = require('../dist/app.module');
const { buildOpenApiDocument } = require('../dist/docs/openapi');

async function main() {
  const app = await NestFactory.create(AppModule, { preview: true, logger: false });
  const document = buildOpenApiDocument(app);
  const file = join(__dirname, '..', 'openapi.json');
  writeFileSync(file, `${JSON.stringify(document, null, 2)}\n`);
  await app.close();
  console.log(`Wrote ${file} (${Object.keys(document.paths).length} paths)`);
}

main().catch((error) => {
  console.error(`openapi: ${error.stack ?? error}`);
  process.exit(1);
});
