import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import type { Redis } from 'ioredis';
import { InjectRedis, InjectRedisSubscriber } from '../redis/redis.constants';

/**
 * Redis is up when a PING answers within the timeout and the pub/sub connection is connected
 * too (without it no PUBLISH is heard); a disconnected client answers at once, never hangs.
 */
@Injectable()
export class RedisHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    @InjectRedis() private readonly redis: Redis,
    @InjectRedisSubscriber() private readonly subscriber: Redis,
  ) {}

  async isHealthy(key = 'redis', timeoutMs = 1000) {
    const indicator = this.health.check(key);
    if (this.redis.status !== 'ready') return indicator.down({ message: `Redis connection is ${this.redis.status}` });
    if (this.subscriber.status !== 'ready') return indicator.down({ message: `Redis pub/sub connection is ${this.subscriber.status}` });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.redis.ping(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no PING answer within ${timeoutMs} ms`)), timeoutMs)))]);
      return indicator.up();
    } catch (error) {
      return indicator.down({ message: (error as Error).message });
    } finally {
      clearTimeout(timer);
    }
  }
}
