import 'reflect-metadata';
import { Logger, type LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { AppModule } from './app.module';
import { LOG_LEVELS } from './config/environment';
import { MESSENGER_OPTIONS, type MessengerOptions } from './config/messenger-options';
import { useDocs } from './docs/openapi';
import { listenInternal, separateInternalRoutes } from './http/internal-port';
import { useLogger } from './logging/create-logger';
import { useRedMessengerAdapter } from './messenger/use-adapter';
import { isPublishRequest } from './publish/publish-body.middleware';
import type { IncomingMessage } from 'node:http';

/**
 * Connections waiting to be accepted (the kernel caps it at net.core.somaxconn). After a network
 * blip thousands of clients reconnect at once: past Node's default of 511 their SYNs are dropped
 * and retried 1, 3 and 7 s later, so the last sockets of a storm would wait seconds for nothing.
 */
const LISTEN_BACKLOG = 4096;

/** LOG_LEVEL names the least severe level that is printed. */
const levelsFrom = (level: LogLevel): LogLevel[] => LOG_LEVELS.slice(0, LOG_LEVELS.indexOf(level as never) + 1) as LogLevel[];

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule, { bufferLogs: true, abortOnError: false });
  const options = app.get<MessengerOptions>(MESSENGER_OPTIONS);
  // POST /v1/messages reads its own body (up to MAX_PUBLISH_BYTES, errors in its own format).
  app.useBodyParser('json', { type: (req: IncomingMessage) => !isPublishRequest(req) && /json/i.test(req.headers['content-type'] ?? '') });
  app.useBodyParser('urlencoded', { extended: true, type: (req: IncomingMessage) => !isPublishRequest(req) && /urlencoded/i.test(req.headers['content-type'] ?? '') });
  useLogger(app, options.logFormat, levelsFrom(options.logLevel));
  useRedMessengerAdapter(app);
  // The split goes first: its middleware must run before every route, the docs' included.
  if (options.internalPort !== undefined) separateInternalRoutes(app);
  if (options.docs) useDocs(app);
  const logger = new Logger('RedMessenger');

  // SIGTERM / SIGINT: Nest's shutdown hooks return owed messages and close sockets with 1001;
  // the process then exits 0, and within SHUTDOWN_TIMEOUT_MS whatever happens.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      logger.log(`${signal}: shutting down`);
      setTimeout(() => {
        logger.error(`Shutdown did not finish within SHUTDOWN_TIMEOUT_MS=${options.shutdownTimeoutMs}; exiting`);
        process.exit(1);
      }, options.shutdownTimeoutMs).unref();
      app.close().then(
        () => process.exit(0), // the internal port's server (if any) ends with the process
        (error: Error) => {
          logger.error(`Shutdown failed: ${error.message}`);
          process.exit(1);
        },
      );
    });
  }

  // Nest hands its arguments on to net.Server.listen(port, [host], [backlog]); its types leave the backlog out.
  const listen = app.listen.bind(app) as unknown as (port: number, ...rest: Array<string | number>) => Promise<unknown>;
  await (options.host ? listen(options.port, options.host, LISTEN_BACKLOG) : listen(options.port, LISTEN_BACKLOG));
  logger.log(`RedMessenger listening on ${options.host ?? 'all interfaces'}, port ${options.port} (WebSocket path ${options.wsPath}, instance ${options.instanceId})`);
  if (options.internalPort !== undefined) {
    await listenInternal(app, options.internalPort, options.host);
    logger.log(`Internal routes (/metrics, /docs, admin) on port ${options.internalPort} only`);
  }
}

bootstrap().catch((error: Error) => {
  // Invalid configuration lands here: the message names the variable.
  console.error(`RedMessenger cannot start: ${error.message}`);
  process.exit(1);
});
