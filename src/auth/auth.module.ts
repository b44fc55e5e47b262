import { Module } from '@nestjs/common';
import { AuthGuard } from './auth.guard';
import { TokenLifetime } from './token-lifetime';

/** The guard of `identify` and the socket's token lifetime; the TokenVerifier they ask is provided by RedMessengerModule (replaceable there). */
@Module({ providers: [AuthGuard, TokenLifetime], exports: [AuthGuard, TokenLifetime] })
export class AuthModule {}
