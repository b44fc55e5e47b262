import { Injectable } from '@nestjs/common';
import { InjectMessengerOptions, MessengerOptions } from '../config/messenger-options';
import { CloseCode, ErrorCode, FrameError } from '../protocol/frame-error';
import { TokenGrant, TokenVerifier } from './token-verifier';

/** setTimeout's longest delay (about 24.8 days); a later deadline is reached in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

interface Lifetime {
  /** The token's `exp` (seconds since the epoch); undefined: the token never expires. */
  exp?: number;
  timer?: NodeJS.Timeout;
  onExpired?: () => void;
}

/**
 * A socket does not outlive its token (AUTH_MODE=jwt): the guard records the `exp` of the
 * token an identify was accepted with, `start` (at `ready`) arms one timer at
 * exp + AUTH_CLOCK_SKEW_S, `refresh` moves it, `stop` (at close) clears it. One unref'd
 * timer per identified socket; nothing at all with AUTH_MODE none or key.
 */
@Injectable()
export class TokenLifetime {
  /** `refresh` is an event of the protocol only with AUTH_MODE=jwt (else it is unknown, as in version 1). */
  readonly enabled: boolean;
  private readonly sockets = new WeakMap<object, Lifetime>();

  constructor(
    private readonly verifier: TokenVerifier,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
  ) {
    this.enabled = options.authMode === 'jwt';
  }

  /** What the verifier answered for the socket's identify (called by the guard). */
  granted(socket: object, grant: boolean | TokenGrant): void {
    if (this.enabled) this.sockets.set(socket, { exp: typeof grant === 'object' ? grant.exp : undefined });
  }

  /** The socket is ready: from now on `onExpired` runs when its token expires. */
  start(socket: object, onExpired: () => void): void {
    const lifetime = this.sockets.get(socket);
    if (!lifetime) return;
    lifetime.onExpired = onExpired;
    this.arm(lifetime);
  }

  /**
   * Checks a refresh token for the socket's id; on success the socket lives until its
   * `exp`, which is returned. A token that does not prove the id is UNAUTHORIZED, 4401.
   */
  async refresh(socket: object, id: string, token: string): Promise<number | undefined> {
    const grant = await this.verifier.verify(id, token);
    if (!grant) throw new FrameError(ErrorCode.Unauthorized, 'Refresh refused: the token does not prove this id', CloseCode.Unauthorized);
    const lifetime = this.sockets.get(socket) ?? {};
    lifetime.exp = typeof grant === 'object' ? grant.exp : undefined;
    this.sockets.set(socket, lifetime);
    this.arm(lifetime);
    return lifetime.exp;
  }

  stop(socket: object): void {
    clearTimeout(this.sockets.get(socket)?.timer);
    this.sockets.delete(socket);
  }

  private arm(lifetime: Lifetime): void {
    clearTimeout(lifetime.timer);
    lifetime.timer = undefined;
    if (lifetime.exp === undefined || !lifetime.onExpired) return;
    const deadline = (lifetime.exp + this.options.clockSkewSeconds) * 1000;
    const wait = deadline - Date.now();
    if (wait > 0) {
      // Re-armed at each step: a deadline months away fires at the deadline, not at 24.8 days.
      lifetime.timer = setTimeout(() => this.arm(lifetime), Math.min(wait, MAX_DELAY_MS)).unref();
      return;
    }
    lifetime.onExpired();
  }
}

/** The refusal sent when a socket's token has expired: `error` TOKEN_EXPIRED, close 4401. */
export const tokenExpired = () => new FrameError(ErrorCode.TokenExpired, 'The token has expired; identify again with a new one (or send refresh before exp)', CloseCode.Unauthorized);
