import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { FrameError } from '../protocol/frame-error';
import type { IdentifyDto } from '../protocol/frames';
import { TokenVerifier } from './token-verifier';

/**
 * Guards `identify`: the token must prove the id, as the configured
 * TokenVerifier decides. A failure is the same whether the id exists or not.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(private readonly verifier: TokenVerifier) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const { id, token } = context.switchToWs().getData<IdentifyDto>();
    if (await this.verifier.verify(id, token)) return true;
    throw FrameError.unauthorized();
  }
}
