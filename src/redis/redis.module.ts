import { Global, Inject, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { MESSENGER_OPTIONS, MessengerOptions } from '../config/messenger-options';
import { REDIS_CLIENT, REDIS_SUBSCRIBER } from './redis.constants';

const logger = new Logger('Redis');

/** Reconnects with backoff up to 2 s, forever: a server without Redis waits and says so, it does not crash. */
export function createRedis(url: string, role: 'command' | 'subscriber'): Redis {
  const redis = new Redis(url, {
    connectionName: `redmessenger-${role}`,
    // Commands fail fast while Redis is away (the client gets an error frame, nothing is lost);
    // subscriptions wait for it, and ioredis renews them after every reconnect.
    maxRetriesPerRequest: role === 'subscriber' ? null : 2,
    // Commands issued in the same tick (acks of many sockets, reads) leave in one write.
    enableAutoPipelining: role === 'command',
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 2000),
  });
  let down = false;
  redis.on('error', (error: Error) => {
    if (!down) logger.error(`${role} connection to Redis failed: ${error.message}; retrying`);
    down = true;
  });
  redis.on('ready', () => {
    if (down) logger.log(`${role} connection to Redis is back`);
    down = false;
  });
  return redis;
}

@Global()
@Module({
  providers: [
    {
      provide: REDIS_CLIENT,
      inject: [MESSENGER_OPTIONS],
      useFactory: (options: MessengerOptions) => options.redis ?? createRedis(options.redisUrl, 'command'),
    },
    {
      provide: REDIS_SUBSCRIBER,
      inject: [MESSENGER_OPTIONS],
      useFactory: (options: MessengerOptions) =>
        options.redis ? options.redis.duplicate({ maxRetriesPerRequest: null }) : createRedis(options.redisUrl, 'subscriber'),
    },
  ],
  exports: [REDIS_CLIENT, REDIS_SUBSCRIBER],
})
export class RedisModule implements OnApplicationShutdown {
  constructor(
    @Inject(REDIS_CLIENT) private readonly client: Redis,
    @Inject(REDIS_SUBSCRIBER) private readonly subscriber: Redis,
    @Inject(MESSENGER_OPTIONS) private readonly options: MessengerOptions,
  ) {}

  /** Runs after the HTTP and WebSocket servers closed, so nothing in flight loses its Redis. */
  async onApplicationShutdown(): Promise<void> {
    await Promise.all(
      // A client handed in by the host application is the host's to quit.
      [this.subscriber, this.client].filter((redis) => redis !== this.options.redis).map(async (redis) => {
        if (redis.status === 'end') return;
        try {
          await Promise.race([redis.quit(), new Promise((resolve) => setTimeout(resolve, 1000))]);
        } finally {
          redis.disconnect();
        }
      }),
    );
  }
}
