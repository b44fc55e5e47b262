import { Inject } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { hostname } from 'node:os';
import { Environment, type AuthMode, type LogLevelName } from './environment';

/** What the modules of RedMessenger are configured with; only the app maps the environment to it. */
export interface MessengerOptions {
  port: number;
  wsPath: string;
  maxFrameBytes: number;
  redisUrl: string;
  identifyTimeoutMs: number;
  maxInflight: number;
  authMode: AuthMode;
  jwtSecret?: string;
  jwtPublicKey?: string;
  /** Names this process in Redis presence; stable across restarts so a restarted process reclaims its own leftovers. */
  instanceId: string;
  shutdownTimeoutMs: number;
  logLevel: LogLevelName;
  /** How often presence is refreshed, and how long it lives without refresh. */
  heartbeatMs: number;
  presenceTtlMs: number;
  /**
   * An ioredis client the host application already owns: RedMessenger runs its
   * commands on it and subscribes on a duplicate of it, and never quits it.
   */
  redis?: Redis;
}

export const MESSENGER_OPTIONS = 'redmessenger:options';
export const InjectMessengerOptions = () => Inject(MESSENGER_OPTIONS);

export function optionsFromEnvironment(env: Environment): MessengerOptions {
  return {
    port: env.PORT,
    wsPath: env.WS_PATH,
    maxFrameBytes: env.MAX_FRAME_BYTES,
    redisUrl: env.REDIS_URL,
    identifyTimeoutMs: env.IDENTIFY_TIMEOUT_MS,
    maxInflight: env.MAX_INFLIGHT,
    authMode: env.AUTH_MODE,
    jwtSecret: env.AUTH_JWT_SECRET,
    jwtPublicKey: env.AUTH_JWT_PUBLIC_KEY,
    instanceId: env.INSTANCE_ID ?? defaultInstanceId(env.PORT),
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    logLevel: env.LOG_LEVEL,
    heartbeatMs: 1000,
    presenceTtlMs: 5000,
  };
}

const defaultInstanceId = (port: number) => `${hostname()}:${port}`;

/** Fills what a host application left out with the documented defaults. */
export function withDefaults(given: Partial<MessengerOptions>): MessengerOptions {
  const defined = Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined));
  const options = { ...optionsFromEnvironment(new Environment()), ...defined } as MessengerOptions;
  options.instanceId = given.instanceId ?? defaultInstanceId(options.port);
  return options;
}
