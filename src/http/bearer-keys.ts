import { timingSafeEqual } from 'node:crypto';
import { sha256Bytes } from '../protocol/digest';

/**
 * API keys taken as `Authorization: Bearer <key>` (PUBLISH_API_KEYS, ADMIN_API_KEYS).
 * Keys are compared as SHA-256 digests in constant time, against every key, so the time
 * tells neither which key matched nor whether any did.
 */
export class BearerKeys {
  private readonly digests: Buffer[];

  constructor(keys: readonly string[]) {
    this.digests = keys.map((key) => sha256Bytes(key));
  }

  /** No keys: the routes they guard are off. */
  get none(): boolean {
    return this.digests.length === 0;
  }

  /** The key an Authorization header carries when it is one of these; else undefined. */
  match(authorization: string | undefined): string | undefined {
    const token = /^Bearer +(\S+) *$/i.exec(authorization ?? '')?.[1];
    if (token === undefined) return undefined;
    const given = sha256Bytes(token);
    let ok = false;
    for (const key of this.digests) ok = timingSafeEqual(key, given) || ok;
    return ok ? token : undefined;
  }
}
