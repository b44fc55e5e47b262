/** What the server sends, by event (`message` frames are built from envelopes: see envelope.ts). */
export interface ServerEventMap {
  ready: { id: string; channel: string; queued: number; dropped?: number };
  error: { code: string; message: string };
}
