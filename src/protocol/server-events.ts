/** What the server sends, by event (`message` frames are built from envelopes: see envelope.ts). */
export interface ServerEventMap {
  ready: { id: string; channel: string; queued: number; dropped?: number };
  error: { code: string; message: string };
  /** The answer to a valid `refresh`: the new token's `exp` (absent when it has none and AUTH_JWT_REQUIRE_EXP=false). */
  refreshed: { exp?: number };
  /** A message this socket was sent (or the user's sockets before it, then gone) was retracted: the app takes it down. */
  retract: { id: string };
}
