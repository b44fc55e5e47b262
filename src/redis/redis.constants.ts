import { Inject } from '@nestjs/common';

/** The connection for commands and scripts. */
export const REDIS_CLIENT = 'redmessenger:redis-client';
/** A dedicated connection in subscriber mode (pub/sub needs a connection of its own). */
export const REDIS_SUBSCRIBER = 'redmessenger:redis-subscriber';

export const InjectRedis = () => Inject(REDIS_CLIENT);
export const InjectRedisSubscriber = () => Inject(REDIS_SUBSCRIBER);
