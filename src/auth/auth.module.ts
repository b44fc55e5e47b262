import { Module } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { MESSENGER_OPTIONS, MessengerOptions } from '../config/messenger-options';
import { REDIS_CLIENT } from '../redis/redis.constants';
import { AuthGuard } from './auth.guard';
import { TokenVerifier } from './token-verifier';
import { JwtVerifier, KeyVerifier, OpenVerifier } from './verifiers';

/** Picks the TokenVerifier for AUTH_MODE; override the TokenVerifier provider to bring your own. */
@Module({
  providers: [
    {
      provide: TokenVerifier,
      inject: [MESSENGER_OPTIONS, REDIS_CLIENT],
      useFactory: (options: MessengerOptions, redis: Redis): TokenVerifier => {
        switch (options.authMode) {
          case 'key':
            return new KeyVerifier(redis);
          case 'jwt':
            return new JwtVerifier(options);
          default:
            return new OpenVerifier();
        }
      },
    },
    AuthGuard,
  ],
  exports: [TokenVerifier, AuthGuard],
})
export class AuthModule {}
