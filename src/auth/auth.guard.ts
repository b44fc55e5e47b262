import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { FrameError } from '../protocol/frame-error';
import type { IdentifyDto } from '../protocol/frames';
import { TokenLifetime } from './token-lifetime';
import { TokenVerifier } from './token-verifier';

/**
 * Guards `identify`: the token must prove the id, as the configured
 * TokenVerifier decides. A failure is the same whether the id exists or not.
 * An accepted token's `exp` is recorded for the socket's lifetime.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly verifier: TokenVerifier,
    private readonly lifetime: TokenLifetime,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const ws = context.switchToWs();
    const { id, token } = ws.getData<IdentifyDto>();
    const grant = await this.verifier.verify(id, token);
    if (!grant) throw FrameError.unauthorized();
    this.lifetime.granted(ws.getClient<object>(), grant);
    return true;
  }
}
