import { Global, Inject, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { MESSENGER_OPTIONS, MessengerOptions } from '../config/messenger-options';
import { QueueKeys } from './keys';
import { ROUTE_DIRECT, variadicScripts, type RedisClient } from './lua-scripts';
import { REDIS_CLIENT, REDIS_SUBSCRIBER } from './redis.constants';

const logger = new Logger('Redis');

type Role = 'command' | 'subscriber';

const hostPort = (item: string) => {
  const at = item.lastIndexOf(':');
  return { host: item.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(item.slice(at + 1)) };
};

/** Reconnects with backoff up to 2 s, forever: a server without Redis waits and says so, it does not crash. */
const retryStrategy = (attempt: number) => Math.min(100 * 2 ** Math.min(attempt, 5), 2000);
/**
 * The subscriber's backoff stops at 500 ms: every PUBLISH sent while it is away is lost, so
 * after a failover (Sentinel promotes within seconds) it must not sleep up to 2 s more.
 */
/**
 * The subscriber skips ioredis's ready check (an INFO after connecting): ioredis 5.8.2 may send
 * it after a subscribe made while connecting has put the connection in subscriber mode, which
 * fails the connection over and over ("Connection in subscriber mode, only subscriber commands
 * may be used": redis/ioredis#2037) and leaves the instance deaf to PUBLISHes meanwhile.
 */
const NO_READY_CHECK: RedisOptions = { enableReadyCheck: false };

const subscriberRetryStrategy = (attempt: number) => Math.min(100 * 2 ** Math.min(attempt, 5), 500);

/** What a connection is made with: where Redis is, its credentials and TLS, and how long a command may take. */
export type RedisSettings = Pick<
  MessengerOptions,
  'redisUrl' | 'redisClusterNodes' | 'redisSentinels' | 'redisSentinelMaster' | 'redisUsername' | 'redisPassword' | 'redisSentinelPassword' | 'redisTls' | 'redisTlsCa' | 'redisCommandTimeoutMs'
>;

/** The TCP keepalive probe starts after this long idle: a dead peer on a quiet link is found by the kernel too. */
const KEEPALIVE_MS = 10_000;

/**
 * The client for one role, on one Redis (REDIS_URL), a Redis Cluster
 * (REDIS_CLUSTER_NODES: hash-tagged keys, ioredis follows MOVED/ASK itself) or a
 * master found through Sentinels (REDIS_SENTINELS + REDIS_SENTINEL_MASTER: ioredis
 * asks them again after a failover). Every node gets the same credentials and TLS.
 */
export function createRedis(options: RedisSettings, role: Role): RedisClient {
  const oneRedisTls = options.redisTls || /^rediss:/i.test(options.redisUrl);
  const tls = (options.redisClusterNodes?.length || options.redisSentinels?.length ? options.redisTls : oneRedisTls) ? { ca: options.redisTlsCa } : undefined;
  const common: RedisOptions = {
    connectionName: `redmessenger-${role}`,
    // Commands fail fast while Redis is away (the client gets an error frame, nothing is lost);
    // subscriptions wait for it, and ioredis renews them after every reconnect.
    maxRetriesPerRequest: role === 'subscriber' ? null : 2,
    retryStrategy: role === 'subscriber' ? subscriberRetryStrategy : retryStrategy,
    ...(role === 'subscriber' ? NO_READY_CHECK : {}),
    ...timeouts(options.redisCommandTimeoutMs, role),
    ...defined({ username: options.redisUsername, password: options.redisPassword, tls }),
  };
  // Commands issued in the same tick (acks of many sockets, reads) leave in one write; the route calls of a
  // batch that takes several leave as they are made (ROUTE_DIRECT), so Redis starts on the first while the
  // next are built, and each answer comes as soon as it is ready.
  const enableAutoPipelining = role === 'command';
  const autoPipeliningIgnoredCommands = [ROUTE_DIRECT];
  let redis: RedisClient;
  if (options.redisClusterNodes?.length) {
    redis = new Cluster(options.redisClusterNodes.map(hostPort), {
      redisOptions: common,
      enableAutoPipelining,
      // Auto-pipelining groups a command by the slot of its first argument, which for route.lua and
      // acks.lua (a variable number of keys) is the key count: their calls would join pipelines of
      // other nodes' slots, and ioredis rejects those whole. QueueService makes one call per slot.
      autoPipeliningIgnoredCommands: variadicScripts(),
      clusterRetryStrategy: role === 'subscriber' ? subscriberRetryStrategy : retryStrategy,
      // A reshard or failover answers MOVED / TRYAGAIN / CLUSTERDOWN for a while: ioredis retries those.
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 300,
      retryDelayOnTryAgain: 200,
      maxRedirections: 32,
    });
  } else if (options.redisSentinels?.length) {
    redis = new Redis({
      ...common,
      sentinels: options.redisSentinels.map(hostPort),
      name: options.redisSentinelMaster,
      enableAutoPipelining,
      autoPipeliningIgnoredCommands,
      sentinelRetryStrategy: retryStrategy,
      // The Sentinels speak TLS when the nodes do; the master and replicas they name get `tls` above.
      ...defined({ sentinelPassword: options.redisSentinelPassword, sentinelTLS: tls, enableTLSForSentinelMode: tls ? true : undefined }),
    });
  } else {
    // REDIS_USERNAME / REDIS_PASSWORD win over the URL's (ioredis would prefer the URL's).
    redis = new Redis(options.redisPassword ? withoutCredentials(options.redisUrl) : options.redisUrl, { ...common, enableAutoPipelining, autoPipeliningIgnoredCommands });
  }
  return role === 'subscriber' ? resubscribing(watch(redis, role) as Redis) : watch(redis, role);
}

/**
 * A command unanswered within the timeout fails: the caller answers 1013 / 503 or retries, as for
 * an outage. The subscriber gets none (it only waits for messages). ioredis's socketTimeout (drop
 * the connection too) is not used: in 5.8 its timer, armed on a connection that failed, destroys
 * the next one. A dead link on a quiet connection is found by TCP keepalive.
 */
function timeouts(commandTimeoutMs: number, role: Role): RedisOptions {
  return {
    ...(role === 'subscriber' ? {} : { commandTimeout: commandTimeoutMs }),
    connectTimeout: commandTimeoutMs,
    keepAlive: KEEPALIVE_MS,
  };
}

/**
 * Another connection like `client` (same node, credentials, TLS) whose commands may take `extraMs`
 * longer: a blocking read (XREADGROUP BLOCK) or a WAIT must not be cut by the command timeout.
 */
export function duplicateWithMoreTime(client: RedisClient, extraMs: number, name: string): RedisClient {
  const longer = (o: RedisOptions): RedisOptions => ({
    ...o,
    connectionName: `redmessenger-${name}`,
    ...(o.commandTimeout === undefined ? {} : { commandTimeout: o.commandTimeout + extraMs }),
  });
  const copy = client instanceof Cluster ? client.duplicate(undefined, { redisOptions: longer(client.options.redisOptions ?? {}) }) : client.duplicate(longer(client.options));
  copy.on('error', () => undefined); // the command connection logs Redis outages
  return copy;
}

const defined = <T extends object>(fields: T): Partial<T> => Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as Partial<T>;

const withoutCredentials = (url: string): string => {
  const parsed = new URL(url);
  parsed.username = '';
  parsed.password = '';
  return parsed.toString();
};

/**
 * Says once per outage that a connection is down and why (WRONGPASS, NOAUTH, a certificate
 * error, a timeout...: Redis's and Node's messages never carry the password), and when it is back.
 */
function watch<T extends RedisClient>(redis: T, role: Role): T {
  let down = false;
  const failed = (error: Error & { code?: string; lastNodeError?: Error }) => {
    if (down) return;
    down = true;
    // A Cluster's "Failed to refresh slots cache" hides the node's own error.
    const cause = error.lastNodeError ? `${error.message} (${error.lastNodeError.message})` : error.message;
    logger.error(`${role} connection to Redis failed: ${cause}${error.code && !cause.includes(error.code) ? ` [${error.code}]` : ''}; retrying`);
  };
  redis.on('error', failed);
  if (redis instanceof Cluster) redis.on('node error', failed);
  redis.on('ready', () => {
    if (down) logger.log(`${role} connection to Redis is back`);
    down = false;
  });
  return redis;
}

/**
 * ioredis rejects the SUBSCRIBEs waiting for a connection that fails fatally (AUTH refused, a
 * failed ready check) and never sends them again; then the credentials work and nothing is heard.
 * The subscriber asks again for what was refused, once it is ready.
 */
function resubscribing(subscriber: Redis): Redis {
  for (const kind of ['subscribe', 'psubscribe'] as const) {
    const refused = new Set<string>();
    const ask = subscriber[kind].bind(subscriber) as (...channels: string[]) => Promise<unknown>;
    subscriber[kind] = ((...channels: string[]) =>
      ask(...channels).catch((error: Error) => {
        channels.forEach((channel) => refused.add(channel));
        throw error;
      })) as never;
    subscriber.on('ready', () => {
      if (refused.size === 0) return;
      const again = [...refused];
      refused.clear();
      void (subscriber[kind] as (...channels: string[]) => Promise<unknown>)(...again).catch(() => undefined);
    });
  }
  return subscriber;
}

/**
 * The subscriber on a Redis Cluster. Every instance must hear the PUBLISHes in one order: a
 * route shard's hand-over takes effect where its control line falls among the messages, and
 * two nodes relay what was published on other nodes over different bus links, so in different
 * orders (a message near a hand-over would be routed twice, or by nobody). So every instance
 * subscribes on the same node, the master of the shard leases' slot (where the control lines
 * are published), and follows it as the command client learns the slot map (failover, reshard).
 */
export async function clusterSubscriber(cluster: Cluster, waitMs = 5000): Promise<Redis> {
  // Connect straight to the home node: a move later is a gap in what this instance hears.
  if (!cluster.slots.length) {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        cluster.off('refresh', done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      cluster.on('refresh', done);
    });
  }
  const slot = calculateSlot(new QueueKeys(true).shards);
  const home = () => {
    const key = cluster.slots[slot]?.[0];
    return key ? hostPort(key) : undefined;
  };
  // Until the slot map is known: the first seed node (the 'refresh' below moves it home).
  const [first] = (cluster as unknown as { startupNodes: Array<string | number | { host?: string; port?: number }> }).startupNodes;
  const seed = typeof first === 'object' ? { host: first.host ?? '127.0.0.1', port: first.port ?? 6379 } : hostPort(String(first ?? '127.0.0.1:6379'));
  const at = home() ?? seed;
  const retarget = (): boolean => {
    const target = home();
    if (!target || (target.host === subscriber.options.host && target.port === subscriber.options.port)) return false;
    // Read at each (re)connect: ioredis's connector keeps this options object.
    subscriber.options.host = target.host;
    subscriber.options.port = target.port;
    return true;
  };
  const subscriber: Redis = new Redis({
    ...cluster.options.redisOptions,
    host: at.host,
    port: at.port,
    connectionName: 'redmessenger-subscriber',
    maxRetriesPerRequest: null,
    commandTimeout: undefined, // it waits for messages
    ...NO_READY_CHECK,
    retryStrategy: (attempt) => {
      retarget();
      return subscriberRetryStrategy(attempt);
    },
  });
  // The slot map changed: move if the home node did (ioredis subscribes again on the reconnect).
  cluster.on('refresh', () => {
    if (retarget() && subscriber.status !== 'end') subscriber.disconnect(true);
  });
  return resubscribing(watch(subscriber, 'subscriber'));
}

@Global()
@Module({
  providers: [
    {
      provide: REDIS_CLIENT,
      inject: [MESSENGER_OPTIONS],
      useFactory: (options: MessengerOptions) => options.redis ?? createRedis(options, 'command'),
    },
    {
      provide: REDIS_SUBSCRIBER,
      inject: [MESSENGER_OPTIONS, REDIS_CLIENT],
      useFactory: (options: MessengerOptions, client: RedisClient): RedisClient | Promise<RedisClient> => {
        if (client instanceof Cluster) return clusterSubscriber(client);
        const own = options.redis;
        if (!own) return createRedis(options, 'subscriber');
        return resubscribing((own as Redis).duplicate({ maxRetriesPerRequest: null, commandTimeout: undefined, ...NO_READY_CHECK })); // a Cluster of the host's is handled above
      },
    },
    {
      // Hash-tagged key names on a Redis Cluster, the v1 names otherwise.
      provide: QueueKeys,
      inject: [REDIS_CLIENT],
      useFactory: (redis: RedisClient) => new QueueKeys(redis instanceof Cluster),
    },
  ],
  exports: [REDIS_CLIENT, REDIS_SUBSCRIBER, QueueKeys],
})
export class RedisModule implements OnApplicationShutdown {
  constructor(
    @Inject(REDIS_CLIENT) private readonly client: RedisClient,
    @Inject(REDIS_SUBSCRIBER) private readonly subscriber: RedisClient,
    @Inject(MESSENGER_OPTIONS) private readonly options: MessengerOptions,
  ) {}

  /** Runs after the HTTP and WebSocket servers closed, so nothing in flight loses its Redis. */
  async onApplicationShutdown(): Promise<void> {
    await Promise.all(
      // A client handed in by the host application is the host's to quit.
      [this.subscriber, this.client]
        .filter((redis) => redis !== this.options.redis)
        .map(async (redis) => {
          if (redis.status === 'end') return;
          try {
            await Promise.race([redis.quit(), new Promise((resolve) => setTimeout(resolve, 1000))]);
          } finally {
            redis.disconnect();
          }
        }),
    );
  }
}
