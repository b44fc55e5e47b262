import { Global, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { HealthController } from './health.controller';
import { RedisHealthIndicator } from './redis.health';
import { ShutdownHealthIndicator } from './shutdown.health';
import { ShutdownState } from './shutdown-state';

/**
 * `GET /health` (Redis), `/health/live` (the process answers) and `/health/ready`
 * (Redis, and not shutting down). Global so that `ShutdownState` can be injected
 * anywhere (the gateway calls `begin()` from its shutdown hook).
 */
@Global()
@Module({
  imports: [TerminusModule.forRoot({ logger: false })],
  controllers: [HealthController],
  providers: [RedisHealthIndicator, ShutdownHealthIndicator, ShutdownState],
  exports: [ShutdownState],
})
export class HealthModule {}
