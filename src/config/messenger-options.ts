import { Inject } from '@nestjs/common';
import type { Cluster, Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { ConfigError, Environment, type AuthMode, type LogFormat, type LogLevelName, type QueueOverflow } from './environment';

/** What the modules of RedMessenger are configured with; only the app maps the environment to it. */
export interface MessengerOptions {
  port: number;
  /** Interface to listen on; undefined listens on all of them. */
  host?: string;
  /**
   * The standalone server's second port for /metrics, /docs and admin routes
   * (undefined: everything on `port`). Host applications call useInternalPort themselves.
   */
  internalPort?: number;
  /** The standalone server serves Swagger UI at /docs and the document at /docs-json. */
  docs: boolean;
  wsPath: string;
  maxFrameBytes: number;
  redisUrl: string;
  /** Seed nodes of a Redis Cluster (host:port); when set, wins over redisUrl and key names carry hash tags. */
  redisClusterNodes?: string[];
  /** Sentinels (host:port) and the name of the master they watch; when set, win over redisUrl. */
  redisSentinels?: string[];
  redisSentinelMaster?: string;
  /** Credentials for every node (one Redis: they override the URL's), and the Sentinels' own password. */
  redisUsername?: string;
  redisPassword?: string;
  redisSentinelPassword?: string;
  /** TLS to every node (one Redis: also when the URL is rediss://), trusting this CA (PEM text) when given. */
  redisTls: boolean;
  redisTlsCa?: string;
  /** A command unanswered this long fails; blocking reads and WAIT get their own time on top. */
  redisCommandTimeoutMs: number;
  /** The 202 of POST /v1/messages and the XACK of an inbox entry wait for this many replicas (0: no wait), at most the timeout. */
  publishWaitReplicas: number;
  publishWaitTimeoutMs: number;
  /** Bytes of heard messages that may wait to be routed; past it, new ones are dropped and counted (overload). */
  routeBufferBytes: number;
  identifyTimeoutMs: number;
  maxInflight: number;
  authMode: AuthMode;
  jwtSecret?: string;
  jwtPublicKey?: string;
  /** A JWKS endpoint whose keys verify JWTs (by `kid`), beside or instead of the secret or public key. */
  jwksUrl?: string;
  /** A JWT without `exp` is refused (AUTH_JWT_REQUIRE_EXP). */
  jwtRequireExp: boolean;
  /** Names this process in Redis presence; stable across restarts so a restarted process reclaims its own leftovers. */
  instanceId: string;
  shutdownTimeoutMs: number;
  logLevel: LogLevelName;
  logFormat: LogFormat;
  /** Per-user queue cap (0: none), what happens past it, and each message's time to live in a queue (0: forever). */
  maxQueueLength: number;
  queueOverflow: QueueOverflow;
  queueTtlSeconds: number;
  /** Past this many sockets of one user the oldest is closed with 4409 (0: no limit). */
  maxSocketsPerUser: number;
  /** Past this many sockets on this instance a new one is closed with 1013 (0: no limit). */
  maxConnections: number;
  /** Per remote address, per minute (0: no limit); past them the socket is closed with 4429. */
  connectionRatePerMinute: number;
  identifyRatePerMinute: number;
  /** A socket with this many bytes unsent is not sent more; still so after the timeout, it is closed. */
  slowConsumerBytes: number;
  slowConsumerTimeoutMs: number;
  /** Frames per second one socket may send (a burst of this many is accepted); past it, 4429 (0: no limit). */
  maxFramesPerSecond: number;
  /** A ping to every socket this often (0: off); a socket silent for interval + timeout is closed as cut. */
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** Origin header values accepted for upgrades (empty: any). */
  allowedOrigins: string[];
  /** Proxy addresses whose X-Forwarded-For is believed (empty: none). */
  trustedProxies: string[];
  jwtIssuer?: string;
  jwtAudience?: string;
  clockSkewSeconds: number;
  /** Bearer keys of POST /v1/messages (empty: the route answers 404), and its largest body in bytes. */
  publishApiKeys: string[];
  maxPublishBytes: number;
  /** The Redis stream of events (undefined: no events), its approximate cap, and after how long an unacked message is `unread` (0: never). */
  eventsStream?: string;
  eventsMaxLen: number;
  unreadAfterSeconds: number;
  /** Absences (`notify` / `resolved`): after how long away with a message waiting (0: off), and the repeat within one (0: none). */
  notifyAfterSeconds: number;
  notifyRepeatSeconds: number;
  /** Bearer keys of GET /v1/users/<id>, 16+ characters each (empty: the route answers 404). */
  adminApiKeys: string[];
  /** How often presence is refreshed, and how long it lives without refresh. */
  heartbeatMs: number;
  presenceTtlMs: number;
  /**
   * An ioredis client (or Cluster) the host application already owns: RedMessenger
   * runs its commands on it and subscribes on a duplicate of it, and never quits it.
   */
  redis?: Redis | Cluster;
}

export const MESSENGER_OPTIONS = 'redmessenger:options';
export const InjectMessengerOptions = () => Inject(MESSENGER_OPTIONS);

export function optionsFromEnvironment(env: Environment): MessengerOptions {
  return {
    port: env.PORT,
    host: env.HOST,
    internalPort: env.INTERNAL_PORT,
    docs: env.DOCS,
    wsPath: env.WS_PATH,
    maxFrameBytes: env.MAX_FRAME_BYTES,
    redisUrl: env.REDIS_URL,
    redisClusterNodes: env.REDIS_CLUSTER_NODES ? list(env.REDIS_CLUSTER_NODES) : undefined,
    redisSentinels: env.REDIS_SENTINELS ? list(env.REDIS_SENTINELS) : undefined,
    redisSentinelMaster: env.REDIS_SENTINEL_MASTER,
    redisUsername: env.REDIS_USERNAME,
    redisPassword: env.REDIS_PASSWORD,
    redisSentinelPassword: env.REDIS_SENTINEL_PASSWORD,
    redisTls: env.REDIS_TLS,
    redisTlsCa: env.REDIS_TLS_CA_FILE ? readCa(env.REDIS_TLS_CA_FILE) : undefined,
    redisCommandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS,
    publishWaitReplicas: env.PUBLISH_WAIT_REPLICAS,
    publishWaitTimeoutMs: env.PUBLISH_WAIT_TIMEOUT_MS,
    routeBufferBytes: env.ROUTE_BUFFER_BYTES,
    identifyTimeoutMs: env.IDENTIFY_TIMEOUT_MS,
    maxInflight: env.MAX_INFLIGHT,
    authMode: env.AUTH_MODE,
    jwtSecret: env.AUTH_JWT_SECRET,
    jwtPublicKey: env.AUTH_JWT_PUBLIC_KEY,
    jwksUrl: env.AUTH_JWKS_URL,
    jwtRequireExp: env.AUTH_JWT_REQUIRE_EXP,
    instanceId: env.INSTANCE_ID ?? defaultInstanceId(env.PORT),
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    logLevel: env.LOG_LEVEL,
    logFormat: env.LOG_FORMAT,
    maxQueueLength: env.MAX_QUEUE_LENGTH,
    queueOverflow: env.QUEUE_OVERFLOW,
    queueTtlSeconds: env.QUEUE_TTL_SECONDS,
    maxSocketsPerUser: env.MAX_SOCKETS_PER_USER,
    maxConnections: env.MAX_CONNECTIONS,
    connectionRatePerMinute: env.CONNECTION_RATE_PER_MINUTE,
    identifyRatePerMinute: env.IDENTIFY_RATE_PER_MINUTE,
    slowConsumerBytes: env.SLOW_CONSUMER_BYTES,
    slowConsumerTimeoutMs: env.SLOW_CONSUMER_TIMEOUT_MS,
    maxFramesPerSecond: env.MAX_FRAMES_PER_SECOND,
    pingIntervalMs: env.PING_INTERVAL_MS,
    pingTimeoutMs: env.PING_TIMEOUT_MS,
    allowedOrigins: list(env.ALLOWED_ORIGINS),
    trustedProxies: list(env.TRUSTED_PROXIES),
    jwtIssuer: env.AUTH_JWT_ISSUER,
    jwtAudience: env.AUTH_JWT_AUDIENCE,
    clockSkewSeconds: env.AUTH_CLOCK_SKEW_S,
    publishApiKeys: list(env.PUBLISH_API_KEYS),
    maxPublishBytes: env.MAX_PUBLISH_BYTES,
    eventsStream: env.EVENTS_STREAM,
    eventsMaxLen: env.EVENTS_MAXLEN,
    unreadAfterSeconds: env.UNREAD_AFTER_SECONDS,
    notifyAfterSeconds: env.NOTIFY_AFTER_SECONDS,
    notifyRepeatSeconds: env.NOTIFY_REPEAT_SECONDS,
    adminApiKeys: list(env.ADMIN_API_KEYS),
    // Refreshed often enough that a busy event loop or a slow Redis never lets a live instance look dead.
    heartbeatMs: Math.min(1000, Math.floor(env.PRESENCE_TTL_MS / 4)),
    presenceTtlMs: env.PRESENCE_TTL_MS,
  };
}

/** Read once at start: a missing or unreadable file stops the start (the message names the variable, not the path). */
function readCa(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`REDIS_TLS_CA_FILE cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError('REDIS_TLS_CA_FILE must be a PEM file of certificates');
  return pem;
}

const list = (value?: string) =>
  (value ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
const defaultInstanceId = (port: number) => `${hostname()}:${port}`;

/** Fills what a host application left out with the documented defaults. */
export function withDefaults(given: Partial<MessengerOptions>): MessengerOptions {
  const defined = Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined));
  const options = { ...optionsFromEnvironment(new Environment()), ...defined } as MessengerOptions;
  options.instanceId = given.instanceId ?? defaultInstanceId(options.port);
  return options;
}
