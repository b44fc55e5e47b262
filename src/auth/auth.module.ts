import { Module } from '@nestjs/common';
import { AuthGuard } from './auth.guard';

/** The guard of `identify`; the TokenVerifier it asks is provided by RedMessengerModule (replaceable there). */
@Module({ providers: [AuthGuard], exports: [AuthGuard] })
export class AuthModule {}
