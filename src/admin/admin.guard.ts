import { CanActivate, ExecutionContext, Injectable, NotFoundException, UnauthorizedException } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';

const MIN_KEY_LENGTH = 16;
const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * ADMIN_API_KEYS: `Authorization: Bearer <key>`. Without keys the admin routes do
 * not exist (the 404 Nest gives any unknown route); a missing or wrong key is 401.
 * Keys are compared as SHA-256 digests in constant time, against every key.
 */
@Injectable()
export class AdminGuard implements CanActivate {
  private readonly keys: Buffer[];

  constructor(@InjectMessengerOptions() options: MessengerOptions) {
    const keys = options.adminApiKeys ?? [];
    if (keys.some((key) => key.length < MIN_KEY_LENGTH)) throw new Error(`ADMIN_API_KEYS (adminApiKeys): every key must be at least ${MIN_KEY_LENGTH} characters`);
    this.keys = keys.map(digest);
  }

  canActivate(context: ExecutionContext): boolean {
    const http = context.switchToHttp();
    const request = http.getRequest<IncomingMessage & { originalUrl?: string }>();
    if (this.keys.length === 0) throw new NotFoundException(`Cannot ${request.method} ${request.originalUrl ?? request.url}`);
    const token = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1];
    if (token !== undefined) {
      const given = digest(token);
      let ok = false;
      for (const key of this.keys) ok = timingSafeEqual(key, given) || ok;
      if (ok) return true;
    }
    http.getResponse<ServerResponse>().setHeader('WWW-Authenticate', 'Bearer');
    throw new UnauthorizedException();
  }
}
