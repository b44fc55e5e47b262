import { ConfigurableModuleBuilder, type Provider, type Type } from '@nestjs/common';
import { TokenVerifier } from './auth/token-verifier';
import { JwtVerifier, KeyVerifier, OpenVerifier } from './auth/verifiers';
import { DeliveryListener } from './events/delivery-listener';
import { MESSENGER_OPTIONS, type MessengerOptions } from './config/messenger-options';
import { QueueKeys } from './redis/keys';
import type { RedisClient } from './redis/lua-scripts';
import { REDIS_CLIENT } from './redis/redis.constants';

/** What a host application passes to `RedMessengerModule.forRoot(...)`; every field has a default. */
export type RedMessengerModuleOptions = Partial<MessengerOptions>;

export interface RedMessengerExtras {
  /** Replaces the token check of AUTH_MODE with the host application's own. */
  tokenVerifier?: Type<TokenVerifier>;
  /** The host application's delivery hooks (delivered, queued, acked, dropped). */
  listener?: Type<DeliveryListener>;
}

/** The TokenVerifier: the host's class when given, else the one AUTH_MODE names. */
function tokenVerifierProvider(custom?: Type<TokenVerifier>): Provider {
  if (custom) return { provide: TokenVerifier, useClass: custom };
  return {
    provide: TokenVerifier,
    inject: [MESSENGER_OPTIONS, REDIS_CLIENT, QueueKeys],
    useFactory: (options: MessengerOptions, redis: RedisClient, keys: QueueKeys): TokenVerifier => {
      if (options.authMode === 'key') return new KeyVerifier(redis, keys);
      if (options.authMode === 'jwt') return new JwtVerifier(options);
      return new OpenVerifier();
    },
  };
}

export const {
  ConfigurableModuleClass: ConfigurableRedMessengerModule,
  MODULE_OPTIONS_TOKEN: REDMESSENGER_MODULE_OPTIONS,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<RedMessengerModuleOptions>({ moduleName: 'RedMessenger' })
  .setClassMethodName('forRoot')
  .setExtras<RedMessengerExtras>({}, (definition, extras) => ({
    ...definition,
    global: true,
    providers: [
      ...(definition.providers ?? []),
      tokenVerifierProvider(extras.tokenVerifier),
      // No listener, no provider: EventsService then makes no hook call at all.
      ...(extras.listener ? [{ provide: DeliveryListener, useClass: extras.listener }] : []),
    ],
    exports: [...(definition.exports ?? []), TokenVerifier, ...(extras.listener ? [DeliveryListener] : [])],
  }))
  .build();
