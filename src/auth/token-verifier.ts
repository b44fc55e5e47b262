/** What a verifier may say of an accepted token: when it stops proving the id (`exp`, seconds since the epoch). */
export interface TokenGrant {
  exp?: number;
}

/**
 * Decides whether `token` proves that the socket may act as `id`. The DI token
 * for the verifier is this class: a team replaces it with its own provider
 * (`{ provide: TokenVerifier, useClass: MyVerifier }`) to check tokens its own way.
 * `true` or a grant accepts; a grant with `exp` also bounds the socket's life
 * (AUTH_MODE=jwt: see TokenLifetime).
 */
export abstract class TokenVerifier {
  abstract verify(id: string, token: string | undefined): Promise<boolean | TokenGrant>;
}
