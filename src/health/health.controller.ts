import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { RedisHealthIndicator } from './redis.health';
import { ShutdownHealthIndicator } from './shutdown.health';

// @HealthCheck() documents the 200 and 503 answers itself when @nestjs/swagger is installed.
@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly redis: RedisHealthIndicator,
    private readonly shutdown: ShutdownHealthIndicator,
  ) {}

  /** 200 with "status":"ok" while Redis answers, 503 with "status":"error" while it does not. */
  @Get()
  @ApiOperation({ summary: 'Redis answers a PING within 1 s (200), or not (503)' })
  @HealthCheck()
  check() {
    return this.health.check([() => this.redis.isHealthy()]);
  }

  /**
   * Liveness: 200 whenever the process can answer at all (the event loop runs).
   * Redis is not checked: a server waiting for Redis is alive, and restarting it
   * would not bring Redis back.
   */
  @Get('live')
  @ApiOperation({ summary: 'Liveness: the process answers (no Redis check)' })
  @HealthCheck()
  live() {
    return this.health.check([() => this.indicators.check('process').up({ uptime: Math.round(process.uptime()) })]);
  }

  /** Readiness: 200 while Redis answers and the server is not shutting down, 503 otherwise. */
  @Get('ready')
  @ApiOperation({ summary: 'Readiness: Redis answers and the server is not shutting down' })
  @HealthCheck()
  ready() {
    return this.health.check([() => this.redis.isHealthy(), () => this.shutdown.isAccepting()]);
  }
}
