import type { INestApplication } from '@nestjs/common';
import { MESSENGER_OPTIONS, type MessengerOptions } from '../config/messenger-options';
import { MessengerGateway } from './messenger.gateway';
import { MessengerWsAdapter } from './messenger-ws.adapter';

/** Installs RedMessenger's WebSocket adapter (WS_PATH, MAX_FRAME_BYTES, the contract's answers to bad frames). */
export function useRedMessengerAdapter(app: INestApplication): MessengerWsAdapter {
  const options = app.get<MessengerOptions>(MESSENGER_OPTIONS);
  const adapter = new MessengerWsAdapter(app, {
    path: options.wsPath,
    maxFrameBytes: options.maxFrameBytes,
    allowedOrigins: options.allowedOrigins,
  });
  adapter.useScreen(app.get(MessengerGateway));
  app.useWebSocketAdapter(adapter);
  return adapter;
}
