import { Injectable, mixin, NotFoundException, UnauthorizedException, type CanActivate, type ExecutionContext, type Type } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { BearerKeys } from './bearer-keys';

/** A request that passed an ApiKeyGuard, with the key it carried. */
export type KeyedRequest = IncomingMessage & { originalUrl?: string; apiKey?: string };

/** Which keys guard a controller's routes, and how its 401 reads. */
export interface ApiKeys {
  /** The keys' name in errors: the variable and the option they come from. */
  readonly name: string;
  /** The keys (empty: the routes are off). */
  readonly keys: (options: MessengerOptions) => readonly string[];
  /** Keys shorter than this stop the start (the environment checks its own; options given in code are checked here). */
  readonly minKeyLength?: number;
  /** The 401's message (Nest's "Unauthorized" when not given). */
  readonly unauthorized?: string;
  /** A 401 says `WWW-Authenticate: Bearer`. */
  readonly challenge?: boolean;
}

/**
 * A guard of routes taking `Authorization: Bearer <key>`: while there are no keys the routes do
 * not exist (the 404 Nest gives any unknown route); without one of the keys, 401. The key found
 * is left on the request (`apiKey`).
 */
export function ApiKeyGuard(spec: ApiKeys): Type<CanActivate> {
  @Injectable()
  class Guard implements CanActivate {
    private readonly keys: BearerKeys;

    constructor(@InjectMessengerOptions() options: MessengerOptions) {
      const keys = spec.keys(options) ?? [];
      const min = spec.minKeyLength ?? 0;
      if (keys.some((key) => key.length < min)) throw new Error(`${spec.name}: every key must be at least ${min} characters`);
      this.keys = new BearerKeys(keys);
    }

    canActivate(context: ExecutionContext): boolean {
      const http = context.switchToHttp();
      const request = http.getRequest<KeyedRequest>();
      if (this.keys.none) throw new NotFoundException(`Cannot ${request.method} ${request.originalUrl ?? request.url}`);
      request.apiKey = this.keys.match(request.headers.authorization);
      if (request.apiKey !== undefined) return true;
      if (spec.challenge) http.getResponse<ServerResponse>().setHeader('WWW-Authenticate', 'Bearer');
      throw new UnauthorizedException(spec.unauthorized);
    }
  }
  return mixin(Guard);
}
