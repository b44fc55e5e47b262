/**
 * Decides whether `token` proves that the socket may act as `id`. The DI token
 * for the verifier is this class: a team replaces it with its own provider
 * (`{ provide: TokenVerifier, useClass: MyVerifier }`) to check tokens its own way.
 */
export abstract class TokenVerifier {
  abstract verify(id: string, token: string | undefined): Promise<boolean>;
}
