import { Injectable, OnModuleDestroy } from '@nestjs/common';

/**
 * Whether this server is shutting down. `begin()` is called once shutdown starts
 * (the gateway's shutdown hook calls it; it also happens on its own when Nest
 * starts closing the application, the first step of `app.close()` and of a
 * SIGTERM with shutdown hooks enabled). From then on `GET /health/ready` answers
 * 503, so load balancers stop sending new clients here while the sockets drain.
 * There is no way back: a process that began shutting down ends.
 */
@Injectable()
export class ShutdownState implements OnModuleDestroy {
  private since?: Date;

  get isShuttingDown(): boolean {
    return this.since !== undefined;
  }

  /** When shutdown began, if it has. */
  get startedAt(): Date | undefined {
    return this.since;
  }

  /** Marks the server as shutting down; later calls change nothing. */
  begin(): void {
    this.since ??= new Date();
  }

  onModuleDestroy(): void {
    this.begin();
  }
}
