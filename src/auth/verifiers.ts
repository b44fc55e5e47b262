import { createHash, createPublicKey, KeyObject, timingSafeEqual } from 'node:crypto';
import { errors, jwtVerify } from 'jose';
import { MessengerOptions } from '../config/messenger-options';
import type { QueueKeys } from '../queue/queue-keys';
import type { RedisClient } from '../redis/lua-scripts';
import { TokenVerifier } from './token-verifier';

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
    const digest = (value: Buffer) => createHash('sha256').update(value).digest();
    return timingSafeEqual(digest(stored), digest(Buffer.from(token, 'utf8')));
  }
}

/**
 * AUTH_MODE=jwt: a valid, unexpired JWT whose `sub` is the id. The algorithm is
 * fixed by the configured key (HS256 for a secret; RS256 or ES256 for a public
 * key), so a token cannot choose `none` or turn the public key into an HMAC secret.
 */
export class JwtVerifier extends TokenVerifier {
  private readonly key: Uint8Array | KeyObject;
  private readonly algorithms: string[];

  constructor(private readonly options: Pick<MessengerOptions, 'jwtSecret' | 'jwtPublicKey' | 'jwtIssuer' | 'jwtAudience' | 'clockSkewSeconds'>) {
    super();
    if (options.jwtPublicKey) {
      const key = createPublicKey(options.jwtPublicKey);
      this.algorithms = key.asymmetricKeyType === 'ec' ? ['ES256'] : ['RS256'];
      this.key = key;
    } else if (options.jwtSecret) {
      this.algorithms = ['HS256'];
      this.key = new TextEncoder().encode(options.jwtSecret);
    } else {
      throw new Error('AUTH_MODE=jwt needs AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY');
    }
  }

  async verify(id: string, token: string | undefined): Promise<boolean> {
    if (!token) return false;
    try {
      const skew = this.options.clockSkewSeconds;
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: this.algorithms,
        subject: id,
        issuer: this.options.jwtIssuer,
        audience: this.options.jwtAudience,
        clockTolerance: skew,
      });
      // Issued in the future beyond the allowed skew: the issuer's clock (or the token) is wrong.
      if (typeof payload.iat === 'number' && payload.iat > Date.now() / 1000 + skew) return false;
      return payload.sub === id;
    } catch (error) {
      if (error instanceof errors.JOSEError || error instanceof TypeError) return false;
      throw error;
    }
  }
}
