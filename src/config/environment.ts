import { plainToInstance } from 'class-transformer';
import { getMetadataStorage, IS_BOOLEAN, IS_INT, IsBoolean, IsIn, IsInt, IsOptional, IsString, Matches, Max, Min, ValidateIf, validateSync } from 'class-validator';

export const AUTH_MODES = ['none', 'key', 'jwt'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];
export const LOG_LEVELS = ['error', 'warn', 'log', 'debug', 'verbose'] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export const QUEUE_OVERFLOWS = ['drop-oldest', 'reject'] as const;
export type QueueOverflow = (typeof QUEUE_OVERFLOWS)[number];

/** host:port[,host:port...] (a host name, an IPv4 address or a bracketed IPv6 address). */
const HOST_PORT_LIST = /^(?:(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5})(?:,(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5})*$/;

/** http(s)://host..., no spaces; a URL that still does not parse is refused in validateEnvironment. */
const HTTP_URL = /^https?:\/\/[^\s/?#]+\S*$/;

/**
 * Every setting the server reads, with its default. `config/.env.example` lists
 * the same settings for people; this class is what the start is checked against.
 */
export class Environment {
  @IsOptional()
  @IsIn(['development', 'production', 'test'])
  NODE_ENV?: string;

  @IsInt()
  @Min(0)
  @Max(65535)
  PORT = 8080;

  @IsOptional()
  @Matches(/^[A-Za-z0-9.:\-[\]]{1,255}$/, { message: 'HOST must be a host name or an IP address' })
  HOST?: string;

  /** When set, /metrics, /docs and admin routes are served on this port only (see src/http/internal-port.ts). */
  @IsOptional()
  @IsInt({ message: 'INTERNAL_PORT must be an integer port (1-65535)' })
  @Min(1, { message: 'INTERNAL_PORT must be an integer port (1-65535)' })
  @Max(65535, { message: 'INTERNAL_PORT must be an integer port (1-65535)' })
  INTERNAL_PORT?: number;

  /** Swagger UI at /docs and the OpenAPI document at /docs-json. */
  @IsBoolean({ message: 'DOCS must be true or false' })
  DOCS = true;

  @Matches(/^\/[^\s?#]*$/, { message: 'WS_PATH must be a URL path starting with "/"' })
  WS_PATH = '/';

  @IsInt()
  @Min(1024)
  @Max(256 * 1024 * 1024)
  MAX_FRAME_BYTES = 1048576;

  @Matches(/^rediss?:\/\/\S+$/, { message: 'REDIS_URL must be a redis:// or rediss:// URL' })
  REDIS_URL = 'redis://127.0.0.1:6379';

  @IsOptional()
  @Matches(HOST_PORT_LIST, { message: 'REDIS_CLUSTER_NODES must be a comma-separated list of host:port' })
  REDIS_CLUSTER_NODES?: string;

  @IsOptional()
  @Matches(HOST_PORT_LIST, { message: 'REDIS_SENTINELS must be a comma-separated list of host:port' })
  REDIS_SENTINELS?: string;

  @ValidateIf((env: Environment) => env.REDIS_SENTINELS !== undefined)
  @Matches(/^[A-Za-z0-9._-]{1,128}$/, { message: 'REDIS_SENTINEL_MASTER must be set with REDIS_SENTINELS: the name of the master the Sentinels watch' })
  REDIS_SENTINEL_MASTER?: string;

  /** Credentials for every Cluster node and every Sentinel-found master and replica; with one Redis, they override the URL's. */
  @IsOptional()
  @Matches(/^[^\s:]{1,256}$/, { message: 'REDIS_USERNAME must be 1-256 characters without spaces or ":"' })
  REDIS_USERNAME?: string;

  @IsOptional()
  @Matches(/^\S{1,512}$/, { message: 'REDIS_PASSWORD must be 1-512 characters without spaces' })
  REDIS_PASSWORD?: string;

  /** TLS to every Redis node (Cluster nodes, Sentinels and the master they name; one Redis: also rediss://). */
  @IsBoolean({ message: 'REDIS_TLS must be true or false' })
  REDIS_TLS = false;

  /** A PEM file of the CA that signed the Redis servers' certificates (read at start). */
  @IsOptional()
  @IsString()
  REDIS_TLS_CA_FILE?: string;

  /** The Sentinels' own password (their requirepass). */
  @IsOptional()
  @Matches(/^\S{1,512}$/, { message: 'REDIS_SENTINEL_PASSWORD must be 1-512 characters without spaces' })
  REDIS_SENTINEL_PASSWORD?: string;

  /** A Redis command unanswered this long fails, as when Redis is away (a black-holed link, a stalled Redis). */
  @IsInt({ message: 'REDIS_COMMAND_TIMEOUT_MS must be an integer from 500 to 600000' })
  @Min(500, { message: 'REDIS_COMMAND_TIMEOUT_MS must be an integer from 500 to 600000' })
  @Max(600_000, { message: 'REDIS_COMMAND_TIMEOUT_MS must be an integer from 500 to 600000' })
  REDIS_COMMAND_TIMEOUT_MS = 5000;

  /** Heard messages waiting to be routed, in bytes: the pub/sub connection is read as fast as it arrives, into this. */
  @IsInt()
  @Min(1024 * 1024)
  @Max(16 * 1024 * 1024 * 1024)
  ROUTE_BUFFER_BYTES = 256 * 1024 * 1024;

  @IsInt()
  @Min(100)
  @Max(3_600_000)
  IDENTIFY_TIMEOUT_MS = 10000;

  @IsInt()
  @Min(1)
  @Max(100000)
  MAX_INFLIGHT = 1000;

  @IsIn(AUTH_MODES, { message: `AUTH_MODE must be one of: ${AUTH_MODES.join(', ')}` })
  AUTH_MODE: AuthMode = 'none';

  @ValidateIf((env: Environment) => env.AUTH_MODE === 'jwt' && !env.AUTH_JWT_PUBLIC_KEY && !env.AUTH_JWKS_URL)
  @IsString({ message: 'AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY (or AUTH_JWKS_URL) must be set when AUTH_MODE=jwt' })
  @Matches(/^.{32,}$/s, { message: 'AUTH_JWT_SECRET must be at least 32 characters long' })
  AUTH_JWT_SECRET?: string;

  @IsOptional()
  @Matches(/-----BEGIN PUBLIC KEY-----/, { message: 'AUTH_JWT_PUBLIC_KEY must be a PEM (SPKI) public key' })
  AUTH_JWT_PUBLIC_KEY?: string;

  /** A JWKS endpoint (an identity provider's /.well-known/jwks.json): keys chosen by `kid`, rotated without a restart. */
  @IsOptional()
  @Matches(HTTP_URL, { message: 'AUTH_JWKS_URL must be an http:// or https:// URL' })
  AUTH_JWKS_URL?: string;

  /** A JWT without `exp` would prove its id forever: refused unless this is false. */
  @IsBoolean({ message: 'AUTH_JWT_REQUIRE_EXP must be true or false' })
  AUTH_JWT_REQUIRE_EXP = true;

  @IsIn(LOG_LEVELS, { message: `LOG_LEVEL must be one of: ${LOG_LEVELS.join(', ')}` })
  LOG_LEVEL: LogLevelName = 'log';

  @IsOptional()
  @Matches(/^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$/, { message: 'INSTANCE_ID must be 1-128 characters of A-Z a-z 0-9 . _ @ : -' })
  INSTANCE_ID?: string;

  @IsInt()
  @Min(1000)
  @Max(3_600_000)
  SHUTDOWN_TIMEOUT_MS = 10000;

  /** How long an instance that stops refreshing its presence counts as alive: its sockets' owed messages return to the queues after it. */
  @IsInt()
  @Min(1000)
  @Max(600_000)
  PRESENCE_TTL_MS = 5000;

  /** `json` by default when NODE_ENV=production (validateEnvironment). */
  @IsIn(LOG_FORMATS, { message: `LOG_FORMAT must be one of: ${LOG_FORMATS.join(', ')}` })
  LOG_FORMAT: LogFormat = 'text';

  // Limits. 0 turns a limit off.
  @IsInt()
  @Min(0)
  @Max(100_000_000)
  MAX_QUEUE_LENGTH = 100000;

  @IsIn(QUEUE_OVERFLOWS, { message: `QUEUE_OVERFLOW must be one of: ${QUEUE_OVERFLOWS.join(', ')}` })
  QUEUE_OVERFLOW: QueueOverflow = 'drop-oldest';

  @IsInt()
  @Min(0)
  @Max(10 * 365 * 86400)
  QUEUE_TTL_SECONDS = 604800;

  @IsInt()
  @Min(0)
  @Max(10000)
  MAX_SOCKETS_PER_USER = 6;

  @IsInt()
  @Min(0)
  @Max(10_000_000)
  MAX_CONNECTIONS = 100000;

  @IsInt()
  @Min(0)
  @Max(10_000_000)
  CONNECTION_RATE_PER_MINUTE = 6000;

  @IsInt()
  @Min(0)
  @Max(10_000_000)
  IDENTIFY_RATE_PER_MINUTE = 3000;

  @IsInt()
  @Min(0)
  @Max(1024 * 1024 * 1024)
  SLOW_CONSUMER_BYTES = 8 * 1024 * 1024;

  @IsInt()
  @Min(100)
  @Max(3_600_000)
  SLOW_CONSUMER_TIMEOUT_MS = 30000;

  /** Frames one socket may send per second (a burst of this many at once is accepted); past it RATE_LIMITED, 4429. 0: no limit. */
  @IsInt({ message: 'MAX_FRAMES_PER_SECOND must be an integer from 0 to 1000000' })
  @Min(0, { message: 'MAX_FRAMES_PER_SECOND must be an integer from 0 to 1000000' })
  @Max(1_000_000, { message: 'MAX_FRAMES_PER_SECOND must be an integer from 0 to 1000000' })
  MAX_FRAMES_PER_SECOND = 2000;

  /** A WebSocket ping to every socket this often (0: no heartbeat). */
  @ValidateIf((env: Environment) => env.PING_INTERVAL_MS !== 0)
  @IsInt({ message: 'PING_INTERVAL_MS must be 0 (off) or an integer from 100 to 3600000' })
  @Min(100, { message: 'PING_INTERVAL_MS must be 0 (off) or an integer from 100 to 3600000' })
  @Max(3_600_000, { message: 'PING_INTERVAL_MS must be 0 (off) or an integer from 100 to 3600000' })
  PING_INTERVAL_MS = 25000;

  /** A socket silent (no pong, no frame) for PING_INTERVAL_MS + this is closed as cut. */
  @IsInt({ message: 'PING_TIMEOUT_MS must be an integer from 100 to 3600000' })
  @Min(100, { message: 'PING_TIMEOUT_MS must be an integer from 100 to 3600000' })
  @Max(3_600_000, { message: 'PING_TIMEOUT_MS must be an integer from 100 to 3600000' })
  PING_TIMEOUT_MS = 20000;

  // Security.
  @IsOptional()
  @IsString()
  ALLOWED_ORIGINS?: string;

  @IsOptional()
  @IsString()
  TRUSTED_PROXIES?: string;

  @IsOptional()
  @IsString()
  AUTH_JWT_ISSUER?: string;

  @IsOptional()
  @IsString()
  AUTH_JWT_AUDIENCE?: string;

  @IsInt()
  @Min(0)
  @Max(3600)
  AUTH_CLOCK_SKEW_S = 5;

  // Events and the per-user view.
  /** The Redis stream events are appended to (unset: no events, and not one Redis command for them). */
  @IsOptional()
  @Matches(/^[A-Za-z0-9:._{}-]{1,200}$/, { message: 'EVENTS_STREAM must be a Redis key name of 1-200 characters of A-Z a-z 0-9 : . _ - { }' })
  EVENTS_STREAM?: string;

  @IsInt()
  @Min(1)
  @Max(1_000_000_000)
  EVENTS_MAXLEN = 100000;

  /** A message unacked this long gets one `unread` event (0: off). */
  @IsInt()
  @Min(0)
  @Max(30 * 86400)
  UNREAD_AFTER_SECONDS = 0;

  /** One `notify` event per absence: the user not looking this long while a message waited this long (0: off). */
  @IsInt()
  @Min(0)
  @Max(30 * 86400)
  NOTIFY_AFTER_SECONDS = 0;

  /** Within an absence, a further `notify` this long after the last one when the count changed (0: one per absence). */
  @IsInt()
  @Min(0)
  @Max(30 * 86400)
  NOTIFY_REPEAT_SECONDS = 0;

  /** Bearer keys for GET /v1/users/<id> (unset: the route answers 404). */
  @IsOptional()
  @Matches(/^\s*[^\s,]{16,}\s*(?:,\s*[^\s,]{16,}\s*)*$/, { message: 'ADMIN_API_KEYS must be a comma-separated list of keys of at least 16 characters each (no spaces)' })
  ADMIN_API_KEYS?: string;

  /** Serves the demo page at /demo and its POST /demo/messages (anyone may publish to anyone: never in production). */
  @IsBoolean({ message: 'DEMO must be true or false' })
  DEMO = false;

  /** Turns POST /v1/messages on: the Bearer keys producers send (comma-separated). */
  @IsOptional()
  @Matches(/^\s*[^,\s]{16,}\s*(?:,\s*[^,\s]{16,}\s*)*$/, { message: 'PUBLISH_API_KEYS must be a comma-separated list of keys, each at least 16 characters (no spaces)' })
  PUBLISH_API_KEYS?: string;

  /** The largest POST /v1/messages body, in bytes. */
  @IsInt({ message: 'MAX_PUBLISH_BYTES must be an integer from 1024 to 268435456' })
  @Min(1024, { message: 'MAX_PUBLISH_BYTES must be an integer from 1024 to 268435456' })
  @Max(256 * 1024 * 1024, { message: 'MAX_PUBLISH_BYTES must be an integer from 1024 to 268435456' })
  MAX_PUBLISH_BYTES = 1048576;

  /** The 202 of POST /v1/messages and the XACK of an inbox entry wait until this many replicas have the write (0: no wait). */
  @IsInt({ message: 'PUBLISH_WAIT_REPLICAS must be an integer from 0 to 16' })
  @Min(0, { message: 'PUBLISH_WAIT_REPLICAS must be an integer from 0 to 16' })
  @Max(16, { message: 'PUBLISH_WAIT_REPLICAS must be an integer from 0 to 16' })
  PUBLISH_WAIT_REPLICAS = 0;

  @IsInt({ message: 'PUBLISH_WAIT_TIMEOUT_MS must be an integer from 10 to 60000' })
  @Min(10, { message: 'PUBLISH_WAIT_TIMEOUT_MS must be an integer from 10 to 60000' })
  @Max(60_000, { message: 'PUBLISH_WAIT_TIMEOUT_MS must be an integer from 10 to 60000' })
  PUBLISH_WAIT_TIMEOUT_MS = 1000;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = this.constructor.name;
  }
}

/** The class-validator decorators on the settings (every setting has at least one). */
const DECORATED = getMetadataStorage().getTargetValidationMetadatas(Environment, '', true, false);

/** The settings with a decorator named `name` (every one when undefined), each once. */
function settingsDecorated(name?: string): Array<keyof Environment> {
  return [...new Set(DECORATED.filter((m) => name === undefined || m.name === name).map((m) => m.propertyName as keyof Environment))];
}

/** Every setting's name, the optional ones (which have no default to list them by) included. */
export const ENVIRONMENT_KEYS = settingsDecorated();

/** Read as numbers and booleans from their text form (by their validator, so an optional one is too). */
export const INTEGER_SETTINGS: readonly string[] = settingsDecorated(IS_INT);
export const BOOLEAN_SETTINGS: readonly string[] = settingsDecorated(IS_BOOLEAN);

/** Environment text to the setting's type; anything else is left as given, for the validator to refuse. */
function parseValue(key: string, value: unknown): unknown {
  const text = String(value);
  if (INTEGER_SETTINGS.includes(key) && /^-?\d+$/.test(text)) return Number(value);
  if (BOOLEAN_SETTINGS.includes(key) && /^(true|false)$/i.test(text)) return text.toLowerCase() === 'true';
  return value;
}

/**
 * Checks the environment at start. An empty value counts as unset; messages name
 * the variable and never print its value (it may be a secret).
 */
export function validateEnvironment(raw: Record<string, unknown>): Environment {
  const input: Record<string, unknown> = {};
  for (const key of ENVIRONMENT_KEYS) {
    const value = raw[key];
    if (value === undefined || value === '') continue;
    input[key] = parseValue(key, value);
  }
  // In production logs go to a shipper, which wants one JSON object per line.
  if (input.NODE_ENV === 'production') input.LOG_FORMAT ??= 'json';
  const problems: string[] = [];
  if (input.NODE_ENV === 'production' && input.AUTH_MODE === undefined) {
    problems.push('AUTH_MODE must be set explicitly when NODE_ENV=production (none, key or jwt)');
  }
  if (input.NODE_ENV === 'production' && input.DEMO === true) {
    problems.push('DEMO must not be true when NODE_ENV=production (its POST /demo/messages lets anyone publish to any user)');
  }
  // Both on one port would make the internal routes public again.
  if (input.INTERNAL_PORT !== undefined && input.INTERNAL_PORT === (input.PORT ?? new Environment().PORT)) {
    problems.push('INTERNAL_PORT must differ from PORT');
  }
  if (input.REDIS_CLUSTER_NODES !== undefined && input.REDIS_SENTINELS !== undefined) {
    problems.push('REDIS_CLUSTER_NODES and REDIS_SENTINELS cannot both be set: choose a Redis Cluster or Sentinel');
  }
  if (input.REDIS_SENTINEL_MASTER !== undefined && input.REDIS_SENTINELS === undefined) {
    problems.push('REDIS_SENTINEL_MASTER needs REDIS_SENTINELS (the Sentinels to ask for that master)');
  }
  if (input.REDIS_SENTINEL_PASSWORD !== undefined && input.REDIS_SENTINELS === undefined) {
    problems.push("REDIS_SENTINEL_PASSWORD needs REDIS_SENTINELS (it is the Sentinels' own password)");
  }
  if (input.REDIS_TLS_CA_FILE !== undefined && input.REDIS_TLS !== true && !/^rediss:/i.test(String(input.REDIS_URL ?? ''))) {
    problems.push('REDIS_TLS_CA_FILE needs TLS: REDIS_TLS=true, or a rediss:// REDIS_URL');
  }
  if (input.REDIS_USERNAME !== undefined && input.REDIS_PASSWORD === undefined) {
    problems.push('REDIS_USERNAME needs REDIS_PASSWORD (Redis authenticates a user by its password)');
  }
  if (typeof input.UNREAD_AFTER_SECONDS === 'number' && input.UNREAD_AFTER_SECONDS > 0 && input.EVENTS_STREAM === undefined) {
    problems.push('UNREAD_AFTER_SECONDS needs EVENTS_STREAM (unread events are written to that stream)');
  }
  if (typeof input.NOTIFY_AFTER_SECONDS === 'number' && input.NOTIFY_AFTER_SECONDS > 0 && input.EVENTS_STREAM === undefined) {
    problems.push('NOTIFY_AFTER_SECONDS needs EVENTS_STREAM (notify and resolved events are written to that stream)');
  }
  if (typeof input.AUTH_JWKS_URL === 'string' && HTTP_URL.test(input.AUTH_JWKS_URL) && !URL.canParse(input.AUTH_JWKS_URL)) {
    problems.push('AUTH_JWKS_URL must be an http:// or https:// URL');
  }
  // The pattern allows five digits: a port must also be 1-65535.
  for (const key of ['REDIS_CLUSTER_NODES', 'REDIS_SENTINELS'] as const) {
    const list = input[key];
    if (typeof list !== 'string' || !HOST_PORT_LIST.test(list)) continue;
    const ports = list.split(',').map((item) => Number(item.slice(item.lastIndexOf(':') + 1)));
    if (ports.some((port) => port < 1 || port > 65535)) {
      problems.push(`${key} must be a comma-separated list of host:port with ports 1-65535`);
    }
  }
  const env = plainToInstance(Environment, input);
  for (const error of validateSync(env, { skipMissingProperties: false })) {
    problems.push(...Object.values(error.constraints ?? {}));
  }
  if (problems.length > 0) {
    throw new ConfigError(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return env;
}
