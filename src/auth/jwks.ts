import { Logger } from '@nestjs/common';
import { createLocalJWKSet, errors, type FlattenedJWSInput, type JSONWebKeySet, type JWSHeaderParameters, type KeyLike } from 'jose';
import { CloseCode, ErrorCode, FrameError } from '../protocol/frame-error';

/** The contract's bound: the endpoint is asked at most once per this long, whatever tokens arrive. */
export const JWKS_COOLDOWN_MS = 30_000;
/** Keys older than this are fetched again in the background (a key removed from the set stops working). */
const JWKS_MAX_AGE_MS = 10 * 60_000;
const JWKS_TIMEOUT_MS = 5_000;

type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<KeyLike>;

/**
 * Verification keys from a JWKS endpoint (AUTH_JWKS_URL), chosen by the token's `kid`.
 * The set is fetched at start, again when a token names a `kid` it lacks, and when it is
 * older than 10 minutes; never more than once per 30 s. A failed fetch keeps the cached
 * set in use. jose's createRemoteJWKSet is not used: past its cache age it waits for the
 * endpoint and fails with it, where the contract keeps the cached keys.
 */
export class JwksKeys {
  private readonly logger = new Logger('Jwks');
  private keys?: KeyResolver;
  private fetchedAt = 0;
  private triedAt = -Infinity;
  private loading?: Promise<boolean>;

  constructor(
    private readonly url: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** jose's key resolver: the key for this token's header, or a jose error (refused), or a FrameError (no keys at all). */
  readonly getKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<KeyLike> => {
    if (!this.keys) await this.reload();
    const keys = this.keys;
    if (!keys) {
      throw new FrameError(ErrorCode.Unauthorized, 'Token refused: no verification keys, the key server (JWKS) has not answered; try again later', CloseCode.Unauthorized);
    }
    if (this.now() - this.fetchedAt > JWKS_MAX_AGE_MS) void this.reload();
    try {
      return await keys(header, token);
    } catch (error) {
      // An unknown kid may be a new key (rotation): fetch the set again, once per cooldown.
      if (!(error instanceof errors.JWKSNoMatchingKey) || !(await this.reload())) throw error;
      return this.keys!(header, token);
    }
  };

  /** Fetches the set unless one fetch is under way (joined) or the last began under 30 s ago. Resolves true when new keys came. */
  reload(): Promise<boolean> {
    if (this.loading) return this.loading;
    if (this.now() - this.triedAt < JWKS_COOLDOWN_MS) return Promise.resolve(false);
    this.triedAt = this.now();
    this.loading = this.fetch()
      .then((keys) => {
        this.keys = keys;
        this.fetchedAt = this.now();
        return true;
      })
      .catch((error: Error) => {
        this.logger.warn(`AUTH_JWKS_URL: no key set fetched (${error.message}); ${this.keys ? 'the cached keys stay in use' : 'no keys cached: JWT identifies are refused'}`);
        return false;
      })
      .finally(() => (this.loading = undefined));
    return this.loading;
  }

  private async fetch(): Promise<KeyResolver> {
    const response = await fetch(this.url, { signal: AbortSignal.timeout(JWKS_TIMEOUT_MS), headers: { accept: 'application/json' } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    // createLocalJWKSet refuses a body that is not a key set (JWKSInvalid): the cached set stays.
    return createLocalJWKSet((await response.json()) as JSONWebKeySet) as KeyResolver;
  }
}
