// The set-up the queue scripts' integration specs share (src/queue/lua/*.int-spec.ts): each Lua
// script of the data path against a real Redis, through the QueueService methods that run it.
//
//   const { client, queue, keys, ME, OTHER, routeOne, messages, queued } = useQueueScripts();
//
// Called at the top of a file, it registers jest hooks there: beforeAll starts the file's Redis
// (useRedis), makes a QueueService on it and subscribes to three instance channels; beforeEach
// forgets the notices published so far; afterAll closes the Redis. Every user is a new id, so the
// tests of a file share its Redis. client and queue are stand-ins, usable (in a test or a later
// hook) once beforeAll has run, so they can be destructured at the top of a file.
import type { Redis } from 'ioredis';
import { withDefaults, type MessengerOptions } from '../../src/config/messenger-options';
import { MetricsService } from '../../src/metrics/metrics.service';
import { buildEnvelope, envelopeId } from '../../src/protocol/envelope';
import type { MessageNotice } from '../../src/protocol/notices';
import { QueueService, type StoredMessage } from '../../src/queue/queue.service';
import { QueueKeys } from '../../src/redis/keys';
import { useRedis } from './fixtures';
import { uniqueId } from './ids';
import { within } from './wait';

/** The state's 'L' (includes/state.lua): looking, or not, since a time of Redis's clock. */
export const LOOKING = expect.stringMatching(/^1\|\d+$/);
export const AWAY = expect.stringMatching(/^0\|\d+$/);

export function useQueueScripts() {
  const s = useRedis();
  const metrics = new MetricsService();
  const keys = new QueueKeys(false);
  /** The instance that calls in these tests; OTHER and THIRD hold sockets elsewhere. */
  const ME = uniqueId('me');
  const OTHER = uniqueId('other');
  const THIRD = uniqueId('third');
  const NOW = Date.now();
  /** Notices heard on the three instance channels, as [instance, message]. */
  const heard: Array<[string, string]> = [];
  let syncs = 0;
  let queue: QueueService | undefined;

  const service = (options: Partial<MessengerOptions> = {}, tagged = false) => new QueueService(s.r, withDefaults({ maxSocketsPerUser: 0, ...options }), new QueueKeys(tagged), metrics);

  beforeAll(async () => {
    queue = service();
    const listener = s.redis.client();
    listener.on('message', (channel: string, text: string) => heard.push([channel.slice(keys.instanceChannelPrefix.length), text]));
    await listener.subscribe(keys.instanceChannel(ME), keys.instanceChannel(OTHER), keys.instanceChannel(THIRD));
  });

  beforeEach(async () => {
    await drain();
  });

  /**
   * The notices published so far, each instance's in order: a marker published on every
   * channel after them comes after them on the subscriber's connection too.
   */
  async function notices(): Promise<Array<[string, string]>> {
    const marker = `sync|${++syncs}`;
    for (const instance of [ME, OTHER, THIRD]) await s.r.publish(keys.instanceChannel(instance), marker);
    await within(
      (async () => {
        while (heard.filter(([, text]) => text === marker).length < 3) await new Promise((r) => setTimeout(r, 5));
      })(),
      5000,
      'the notice markers',
    );
    return heard.filter(([, text]) => !text.startsWith('sync|'));
  }
  /** Forgets the notices published so far. */
  const drain = async () => {
    await notices();
    heard.length = 0;
  };

  const client = standIn<Redis>("useQueueScripts' client", () => s.r);
  const theQueue = standIn<QueueService>("useQueueScripts' queue", () => queue);

  /** A message as the router stores it: an envelope built by buildEnvelope, with its collapse key and expiry. */
  function message(user: string, payload: string, extra: { ts?: number; ttl?: number; collapseKey?: string } = {}): StoredMessage {
    const ts = extra.ts ?? NOW;
    return {
      envelope: buildEnvelope({ id: theQueue.ids.next(), channel: keys.userChannel(user), payload, ts, ttl: extra.ttl, collapseKey: extra.collapseKey }),
      collapseKey: extra.collapseKey === undefined ? undefined : JSON.stringify(extra.collapseKey),
      expiresAt: extra.ttl === undefined ? undefined : ts + extra.ttl * 1000,
    };
  }
  const messages = (user: string, ...payloads: string[]) => payloads.map((p) => message(user, p));

  async function routeOne(user: string, stored: StoredMessage[], opts: { via?: QueueService; epoch?: number; inboxEntry?: string; instance?: string } = {}) {
    const [result] = await (opts.via ?? theQueue).route([{ user, messages: stored, epoch: opts.epoch ?? 0, inboxEntry: opts.inboxEntry }], opts.instance ?? ME);
    if (result instanceof Error) throw result;
    return result;
  }

  const queued = (user: string, k = keys) => s.r.lrange(k.queue(user), 0, -1);
  const owed = (user: string, k = keys) => s.r.lrange(k.owed(user), 0, -1);
  const state = (user: string, k = keys) => s.r.hgetall(k.state(user));
  const droppedCounter = async (user: string) => Number((await s.r.get(keys.dropped(user))) ?? '0');
  const envelopes = (stored: StoredMessage[]) => stored.map((m) => m.envelope);
  /** Everything stored for a user, to show that a refused call wrote nothing. */
  const snapshot = async (user: string) => ({
    queue: await queued(user),
    owed: await owed(user),
    state: await state(user),
    dropped: await s.r.get(keys.dropped(user)),
    mark: await s.r.get(keys.inboxMark(user)),
  });
  /** Every key of the user (any type: DUMPed), to compare before and after a call that must write nothing of it. */
  const dumped = async (user: string, ...more: string[]) => Promise.all([...keys.userKeys(user), keys.collapseIndex(user), ...more].map((key) => s.r.dumpBuffer(key)));
  const channelOf = (user: string) => JSON.stringify(keys.userChannel(user));
  const ids = (entries: string[]) => entries.map((e) => envelopeId(e));
  /** The `m` notice of a message newly owed at a position (protocol/notices.ts). */
  const messageNotice = (user: string, position: number, envelope: string): MessageNotice => ({ kind: 'message', user, position, envelope });

  /** A user with `n` owed messages (an online user's routes), read back with their positions. */
  async function owedUser(n: number, conn = 'c1', instance = OTHER) {
    const user = uniqueId();
    await theQueue.attach(user, conn, instance);
    const stored = messages(user, ...Array.from({ length: n }, (_, i) => `m${i}`));
    await routeOne(user, stored);
    return { user, stored, ids: ids(envelopes(stored)) as string[] };
  }

  return {
    /** The file's client of its Redis (the one every QueueService here runs its scripts on). */
    client,
    /** A QueueService with the defaults (no socket limit), unhashed keys. */
    queue: theQueue,
    /** Another QueueService on the same client, with these options (and hash-tagged keys when tagged). */
    service,
    keys,
    ME,
    OTHER,
    THIRD,
    NOW,
    notices,
    drain,
    message,
    messages,
    routeOne,
    queued,
    owed,
    state,
    droppedCounter,
    envelopes,
    snapshot,
    dumped,
    channelOf,
    ids,
    messageNotice,
    owedUser,
  };
}

/** An object that forwards to the one get() gives once beforeAll made it (its methods bound to it). */
function standIn<T extends object>(name: string, get: () => T | undefined): T {
  return new Proxy({} as T, {
    get(_, prop) {
      const target = get();
      if (!target) throw new Error(`${name} is not ready: use it in a test, or in a hook declared after useQueueScripts`);
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
