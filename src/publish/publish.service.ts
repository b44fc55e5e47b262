import { Injectable } from '@nestjs/common';
import { EventsService } from '../events/events.service';
import { QueueService, UnusableKeys, type Idempotency, type RouteGroup, type RouteResult } from '../queue/queue.service';
import { summarizeRoute } from '../queue/route-outcome';
import { QueueKeys } from '../redis/keys';
import type { RedisClient } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';
import { sha256Hex } from '../protocol/digest';
import { StoreService } from '../store/store.service';
import { isValidId, storedMessage, type Publication } from './publication';

/** One publication to store, with what makes its storing recognisable when it comes again. */
export interface Item {
  publication: Publication;
  id: string;
  ts: number;
  inboxEntry?: string;
  idempotency?: Idempotency;
}

/** How one item's recipients came out. */
export interface ItemResult {
  /** Recipients that have the message now (stored by this call or, for a repeat, before). */
  recipients: number;
  stored: number;
  /** Recipients whose inbox mark or idempotency record says it was stored before. */
  repeated: number;
  conflicts: number;
  /** Recipients whose queue was full (QUEUE_OVERFLOW=reject). */
  refused: number;
  failed?: Error;
  /** `to` repeat: the first answer's id. */
  answer?: string;
}

/** The first answer of an HTTP publish with an Idempotency-Key, remembered 24 h. */
const RECORD_TTL_MS = 86_400_000;

export class Unavailable extends Error {}

/**
 * Stores the HTTP and inbox paths' messages: each publication becomes one route group
 * per recipient (the group's members as they are now), stored through StoreService,
 * so route.lua decides deliver-or-queue in the step that stores.
 */
@Injectable()
export class PublishService {
  constructor(
    private readonly store: StoreService,
    private readonly queue: QueueService,
    private readonly keys: QueueKeys,
    @InjectRedis() private readonly redis: RedisClient,
    private readonly events: EventsService,
  ) {}

  newId(): string {
    return this.queue.ids.next();
  }

  /** Stores items in order; a user's messages of one call are stored in item order. */
  async storeAll(items: Item[]): Promise<ItemResult[]> {
    const cids = [...new Set(items.map((item) => item.publication.group).filter((cid): cid is string => cid !== undefined))];
    const sets = cids.length > 0 ? await this.members(cids) : [];
    const members = new Map(cids.map((cid, i) => [cid, sets[i]]));
    const groups: RouteGroup[] = [];
    const owner: number[] = [];
    items.forEach(({ publication, id, ts, inboxEntry, idempotency }, i) => {
      const message = storedMessage(publication, id, ts);
      const users = publication.to !== undefined ? [publication.to] : (members.get(publication.group!) ?? []);
      for (const user of users) {
        groups.push({ user, messages: [message], epoch: 0, inboxEntry, idempotency });
        owner.push(i);
      }
    });
    const results: ItemResult[] = items.map(() => ({ recipients: 0, stored: 0, repeated: 0, conflicts: 0, refused: 0 }));
    if (groups.length === 0) return results;
    (await this.store.store(groups, true)).forEach((result: RouteResult | Error, g) => {
      const item = results[owner[g]];
      // A failure worth retrying (Redis away) wins over unusable keys, which fail the same way every time.
      if (result instanceof Error) {
        item.failed = item.failed && !(item.failed instanceof UnusableKeys) ? item.failed : result;
        return;
      }
      const route = summarizeRoute(groups[g].messages.length, result);
      if (route.conflict) item.conflicts++;
      else if (route.repeated) {
        item.repeated++;
        item.recipients++;
        item.answer ??= result.answer;
      } else if (route.fenced)
        item.failed = new Error('fenced'); // epoch 0 is never fenced
      else if (route.refused > 0) item.refused++;
      else {
        item.stored++;
        item.recipients++;
      }
      // Stored, but a failover could still lose it: not acknowledged as stored (503, entry left pending).
      if (result.unreplicated) item.failed ??= result.unreplicated;
    });
    return results;
  }

  /** The valid members of groups, each sorted (one SMEMBERS each). */
  async members(cids: string[]): Promise<string[][]> {
    return (await this.queue.members(cids)).map((set) => set.filter(isValidId).sort());
  }

  /** Retracts a message of one user (see QueueService.retract); an absence notified for it may end or change its count. */
  async retract(user: string, id: string): Promise<'queued' | 'sent' | undefined> {
    const outcome = await this.queue.retract(user, id);
    if (outcome) this.events.absenceChanged(user);
    return outcome;
  }

  /** Digests naming an idempotency record: the API key and Idempotency-Key (scope), and the body (hash). */
  static idempotency(apiKey: string, key: string, publication: Publication, answer: string): Idempotency {
    const { to, group, payload, ttl, collapseKey } = publication;
    return {
      scope: sha256Hex(`${apiKey}\n${key}`),
      hash: sha256Hex(JSON.stringify([to ?? null, group ?? null, payload, ttl ?? null, collapseKey ?? null])),
      answer,
    };
  }

  /**
   * The answer recorded for this scope, if any: 'same' body or 'other'; `pending` while a
   * group message under it was not stored for every member yet (its id is reserved: a retry
   * stores the rest under the same id, so the message keeps one id for every member).
   */
  async recorded(idem: Idempotency): Promise<{ same: boolean; answer: Record<string, unknown>; pending: boolean } | undefined> {
    const value = await this.redis.get(this.keys.publishRecord(idem.scope));
    if (value === null) return undefined;
    const bar = value.indexOf('|');
    const answer = JSON.parse(value.slice(bar + 1)) as Record<string, unknown>;
    return { same: value.slice(0, bar) === idem.hash, answer, pending: answer.pending === true };
  }

  /**
   * Reserves the id of a group message for its Idempotency-Key before any member is stored;
   * answers the id to use (this one, or the one a request with the same body reserved before
   * it), or undefined when the key was taken meanwhile by another body (a 409).
   */
  async reserve(idem: Idempotency): Promise<string | undefined> {
    const key = this.keys.publishRecord(idem.scope);
    const pending = `${idem.hash}|${JSON.stringify({ id: idem.answer, pending: true })}`;
    if (await this.redis.set(key, pending, 'PX', RECORD_TTL_MS, 'NX')) return idem.answer;
    const seen = await this.recorded(idem);
    if (seen && !seen.same) return undefined;
    return typeof seen?.answer.id === 'string' ? seen.answer.id : idem.answer;
  }

  /** Remembers the answer once every recipient has the message (replacing a reservation). */
  async record(idem: Idempotency, answer: Record<string, unknown>): Promise<void> {
    await this.redis.set(this.keys.publishRecord(idem.scope), `${idem.hash}|${JSON.stringify(answer)}`, 'PX', RECORD_TTL_MS);
  }
}
