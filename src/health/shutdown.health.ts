import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { ShutdownState } from './shutdown-state';

/** Up while the server takes new clients; down once it has begun shutting down. */
@Injectable()
export class ShutdownHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly shutdown: ShutdownState,
  ) {}

  isAccepting(key = 'server') {
    const indicator = this.health.check(key);
    const since = this.shutdown.startedAt;
    return since ? indicator.down({ message: 'shutting down', since: since.toISOString() }) : indicator.up();
  }
}
