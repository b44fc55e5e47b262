import { CanActivate, ExecutionContext, Injectable, NotFoundException, UnauthorizedException } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { BearerKeys } from '../http/bearer-keys';

const MIN_KEY_LENGTH = 16;

/**
 * ADMIN_API_KEYS: `Authorization: Bearer <key>`. Without keys the admin routes do
 * not exist (the 404 Nest gives any unknown route); a missing or wrong key is 401.
 */
@Injectable()
export class AdminGuard implements CanActivate {
  private readonly keys: BearerKeys;

  constructor(@InjectMessengerOptions() options: MessengerOptions) {
    const keys = options.adminApiKeys ?? [];
    if (keys.some((key) => key.length < MIN_KEY_LENGTH)) throw new Error(`ADMIN_API_KEYS (adminApiKeys): every key must be at least ${MIN_KEY_LENGTH} characters`);
    this.keys = new BearerKeys(keys);
  }

  canActivate(context: ExecutionContext): boolean {
    const http = context.switchToHttp();
    const request = http.getRequest<IncomingMessage & { originalUrl?: string }>();
    if (this.keys.none) throw new NotFoundException(`Cannot ${request.method} ${request.originalUrl ?? request.url}`);
    if (this.keys.match(request.headers.authorization) !== undefined) return true;
    http.getResponse<ServerResponse>().setHeader('WWW-Authenticate', 'Bearer');
    throw new UnauthorizedException();
  }
}
