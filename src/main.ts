import 'reflect-metadata';
import { Logger, type LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import { LOG_LEVELS } from './config/environment';
import { MESSENGER_OPTIONS, type MessengerOptions } from './config/messenger-options';
import { useRedMessengerAdapter } from './messenger/use-adapter';

/** LOG_LEVEL names the least severe level that is printed. */
const levelsFrom = (level: LogLevel): LogLevel[] => LOG_LEVELS.slice(0, LOG_LEVELS.indexOf(level as never) + 1) as LogLevel[];

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create(AppModule, { bufferLogs: true, abortOnError: false });
  const options = app.get<MessengerOptions>(MESSENGER_OPTIONS);
  app.useLogger(levelsFrom(options.logLevel));
  useRedMessengerAdapter(app);
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  // A shutdown that cannot finish (Redis gone, say) still ends within SHUTDOWN_TIMEOUT_MS.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => setTimeout(() => process.exit(1), options.shutdownTimeoutMs).unref());
  }
  await app.listen(options.port);
  new Logger('RedMessenger').log(`RedMessenger listening on port ${options.port} (WebSocket path ${options.wsPath}, instance ${options.instanceId})`);
}

bootstrap().catch((error: Error) => {
  // Invalid configuration lands here: the message names the variable.
  console.error(`RedMessenger cannot start: ${error.message}`);
  process.exit(1);
});
