import { createPublicKey, KeyObject, timingSafeEqual } from 'node:crypto';
import { errors, jwtVerify, type FlattenedJWSInput, type JWSHeaderParameters } from 'jose';
import { MessengerOptions } from '../config/messenger-options';
import type { QueueKeys } from '../redis/keys';
import type { RedisClient } from '../redis/lua-scripts';
import { sha256Bytes } from '../protocol/digest';
import { JwksKeys } from './jwks';
import { TokenGrant, TokenVerifier } from './token-verifier';

/** AUTH_MODE=none: anyone may identify as any id. */
export class OpenVerifier extends TokenVerifier {
  async verify(): Promise<boolean> {
    return true;
  }
}

/** AUTH_MODE=key: the token must equal `rm:users:<id>:key`, compared in constant time; no key, no entry. */
export class KeyVerifier extends TokenVerifier {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: QueueKeys,
  ) {
    super();
  }

  async verify(id: string, token: string | undefined): Promise<boolean> {
    const stored = await this.redis.getBuffer(this.keys.authKey(id));
    if (stored === null || token === undefined) return false;
    // Equal-length digests, so neither the comparison nor its length check leaks the key.
    return timingSafeEqual(sha256Bytes(stored), sha256Bytes(token));
  }
}

/** The JWT settings JwtVerifier reads. */
export type JwtOptions = Pick<MessengerOptions, 'jwtSecret' | 'jwtPublicKey' | 'jwksUrl' | 'jwtRequireExp' | 'jwtIssuer' | 'jwtAudience' | 'clockSkewSeconds'>;

/** Algorithms a JWKS key may sign with (the contract's asymmetric pair). */
const JWKS_ALGORITHMS = ['RS256', 'ES256'];

/**
 * AUTH_MODE=jwt: a valid, unexpired JWT whose `sub` is the id, with an `exp` unless
 * AUTH_JWT_REQUIRE_EXP=false. The algorithm is fixed by the configured key (HS256 for a
 * secret; RS256 or ES256 for a public key or a JWKS key), so a token cannot choose
 * `none` or turn a public key into an HMAC secret. With AUTH_JWKS_URL beside a static
 * key, an RS256/ES256 token that names a `kid` (or that the static key cannot check) goes
 * to the JWKS; HS256 always goes to the secret.
 */
export class JwtVerifier extends TokenVerifier {
  private readonly key?: Uint8Array | KeyObject;
  private readonly keyAlgorithms: string[] = [];
  private readonly algorithms: string[];
  readonly jwks?: JwksKeys;

  constructor(private readonly options: JwtOptions) {
    super();
    if (options.jwtPublicKey) {
      const key = createPublicKey(options.jwtPublicKey);
      this.keyAlgorithms = key.asymmetricKeyType === 'ec' ? ['ES256'] : ['RS256'];
      this.key = key;
    } else if (options.jwtSecret) {
      this.keyAlgorithms = ['HS256'];
      this.key = new TextEncoder().encode(options.jwtSecret);
    }
    if (options.jwksUrl) {
      this.jwks = new JwksKeys(options.jwksUrl);
      void this.jwks.reload(); // warm the cache: the first identify need not wait for the endpoint
    }
    if (!this.key && !this.jwks) throw new Error('AUTH_MODE=jwt needs AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL');
    this.algorithms = [...new Set([...this.keyAlgorithms, ...(this.jwks ? JWKS_ALGORITHMS : [])])];
  }

  /** The key for this token's header; jwtVerify has already refused an algorithm outside `algorithms`. */
  private readonly getKey = (header: JWSHeaderParameters, token: FlattenedJWSInput) => {
    const fixed = this.keyAlgorithms.includes(header.alg!) ? this.key : undefined;
    if (this.jwks && JWKS_ALGORITHMS.includes(header.alg!) && (!fixed || header.kid !== undefined)) return this.jwks.getKey(header, token);
    return fixed!;
  };

  async verify(id: string, token: string | undefined): Promise<TokenGrant | false> {
    if (!token) return false;
    try {
      const skew = this.options.clockSkewSeconds;
      const { payload } = await jwtVerify(token, this.getKey, {
        algorithms: this.algorithms,
        subject: id,
        issuer: this.options.jwtIssuer,
        audience: this.options.jwtAudience,
        clockTolerance: skew,
        requiredClaims: this.options.jwtRequireExp ? ['exp'] : [],
      });
      // Issued in the future beyond the allowed skew: the issuer's clock (or the token) is wrong.
      if (typeof payload.iat === 'number' && payload.iat > Date.now() / 1000 + skew) return false;
      return payload.sub === id ? { exp: payload.exp } : false;
    } catch (error) {
      if (error instanceof errors.JOSEError || error instanceof TypeError) return false;
      throw error;
    }
  }
}
