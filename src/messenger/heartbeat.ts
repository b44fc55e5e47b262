import { Logger } from '@nestjs/common';
import type { Connection } from '../delivery/connection';
import { RateLimitedLog } from '../logging/rate-limited-log';

/**
 * The liveness check of every socket: a WebSocket ping each `intervalMs`; a socket
 * from which nothing (no pong, no frame) arrived for `intervalMs + timeoutMs` is
 * closed as cut, without a close handshake (the network may be silent: no FIN, no
 * close frame will come). One timer for all sockets; it ticks often enough that a cut
 * is found at most a quarter of the shorter period late.
 */
export class Heartbeat {
  private readonly logger = new Logger('Heartbeat');
  /** A network that fails takes many sockets at once: one line a second (at log level), the rest counted in it. */
  private readonly cuts = new RateLimitedLog({ warn: (line) => this.logger.log(line) });
  private timer?: NodeJS.Timeout;
  private tickMs = 0;
  private lastCheck = 0;

  constructor(
    private readonly sockets: Iterable<Connection>,
    private readonly intervalMs: number,
    private readonly timeoutMs: number,
  ) {}

  start(): void {
    if (this.intervalMs === 0 || this.timer) return;
    this.tickMs = Math.max(25, Math.floor(Math.min(this.intervalMs, this.timeoutMs) / 4));
    this.lastCheck = Date.now();
    this.timer = setInterval(() => this.check(Date.now()), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Pings the sockets due for one and closes those silent too long. A check that runs late
   * means this process stalled (a long GC, a starved CPU, SIGSTOP): nothing could be read
   * meanwhile, so the silence is ours; every socket is pinged now and gets a full
   * PING_TIMEOUT_MS to answer before it can be cut.
   */
  check(now: number): void {
    const stalled = now - this.lastCheck > 2 * this.tickMs;
    this.lastCheck = now;
    const silentLimit = this.intervalMs + this.timeoutMs;
    for (const conn of this.sockets) {
      if (!conn.open) continue;
      // Reading from it is paused (its frames wait, or it does not take what it is sent): its silence is ours.
      if (conn.held) continue;
      if (stalled) {
        conn.heardAt = Math.max(conn.heardAt, now - this.intervalMs);
        conn.pingedAt = now;
        conn.socket.ping();
        continue;
      }
      const silent = now - conn.heardAt;
      if (silent >= silentLimit) {
        this.cuts.warn('cut', `${conn.user ?? conn.remote}: nothing heard from ${conn.remote} for ${silent} ms (PING_INTERVAL_MS + PING_TIMEOUT_MS = ${silentLimit}); closing it as cut`);
        conn.cut();
      } else if (now - conn.pingedAt >= this.intervalMs) {
        conn.pingedAt = now;
        conn.socket.ping();
      }
    }
  }
}
