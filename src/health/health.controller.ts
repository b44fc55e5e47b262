import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { RedisHealthIndicator } from './redis.health';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly redis: RedisHealthIndicator,
  ) {}

  /** 200 with "status":"ok" while Redis answers, 503 with "status":"error" while it does not. */
  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.redis.isHealthy()]);
  }
}
