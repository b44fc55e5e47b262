// The public surface for host applications that embed RedMessenger.
export { RedMessengerModule } from './redmessenger.module';
export type { RedMessengerModuleOptions, RedMessengerExtras } from './redmessenger.module-definition';
export { useRedMessengerAdapter } from './messenger/use-adapter';
export { TokenVerifier } from './auth/token-verifier';
export { DeliveryListener, type MessageEvent, type QueuedEvent, type DroppedEvent, type DropCause } from './events/delivery-listener';
export { MESSENGER_OPTIONS, InjectMessengerOptions, type MessengerOptions } from './config/messenger-options';
export { REDIS_CLIENT, REDIS_SUBSCRIBER, InjectRedis, InjectRedisSubscriber } from './redis/redis.constants';
export { CloseCode, ErrorCode } from './protocol/frame-error';
export { isValidId, queueKeys, QueueKeys } from './redis/keys';
export { separateInternalRoutes, listenInternal, isInternalPath, INTERNAL_PATH_PREFIXES } from './http/internal-port';
