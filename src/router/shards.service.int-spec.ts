import type { Redis } from 'ioredis';
import { createHash } from 'node:crypto';
import { startRedis, type TestRedis } from '../../test/support/redis';
import { uniqueId } from '../../test/support/ids';
import { within } from '../../test/support/wait';
import { withDefaults } from '../config/messenger-options';
import { MetricsService } from '../metrics/metrics.service';
import { formatControlLine, parseControlLine } from '../protocol/control-lines';
import { QueueKeys } from '../redis/keys';
import { NOT_MINE, PENDING, ShardsService, lapsed } from './shards.service';
import { SHARD_COUNT } from './shards';

/**
 * shards-1.lua against a real Redis, called directly (each call one tick of one
 * instance, with a long lease so nothing lapses unless a test says so), then the
 * ShardsService that runs it. Each test has its own shards hash and control channel.
 */
describe('route shards (shards-1.lua)', () => {
  let redis: TestRedis;
  let client: Redis;
  let listener: Redis;
  const metrics = new MetricsService();
  const LEASE_MS = 60_000;
  /** Lines heard on the control channels, per channel. */
  const heard = new Map<string, string[]>();
  let key: string;
  let control: string;
  let markers = 0;

  beforeAll(async () => {
    redis = await startRedis();
    client = redis.client();
    listener = redis.client();
    listener.on('message', (channel: string, text: string) => heard.get(channel)?.push(text));
    // Registers rmShards on the client.
    new ShardsService(client, withDefaults({ instanceId: 'registrar' }), new QueueKeys(false), metrics);
  });

  afterAll(async () => {
    await redis?.close();
  });

  beforeEach(async () => {
    key = `rm:shards:${uniqueId('test')}`;
    control = `rm:control:${uniqueId('test')}`;
    heard.set(control, []);
    await listener.subscribe(control);
  });

  afterEach(async () => {
    await listener.unsubscribe(control);
    heard.delete(control);
  });

  /** The control lines published so far, in order (a marker published after them is heard after them). */
  async function lines(): Promise<string[]> {
    const marker = `sync|${++markers}`;
    await client.publish(control, marker);
    const got = heard.get(control)!;
    await within(
      (async () => {
        while (!got.includes(marker)) await new Promise((r) => setTimeout(r, 5));
      })(),
      5000,
      'the control marker',
    );
    const out = got.filter((line) => !line.startsWith('sync|'));
    got.length = 0;
    return out;
  }

  /** The control lines (protocol/control-lines.ts): a shard handed over to `to`, and taken by it. */
  const handOverLine = (shard: number, to: string, epoch: number) => formatControlLine({ kind: 'handOver', shard, to, epoch });
  const takenLine = (shard: number, to: string, epoch: number) => formatControlLine({ kind: 'taken', shard, to, epoch });

  /** One call of the script for `me`: the live count and the shards it holds. */
  async function tick(me: string, mode: 'tick' | 'leave' = 'tick', completes: number[] = []) {
    const [live, ...flat] = await client.rmShards(key, me, LEASE_MS, SHARD_COUNT, control, mode, ...completes);
    const held = new Map<number, { epoch: number; handing: boolean }>();
    for (let i = 0; i < flat.length; i += 3) held.set(flat[i], { epoch: flat[i + 1], handing: flat[i + 2] === 1 });
    return { live, held };
  }

  /** The stored leases: shard -> holder, epoch, hand-over target. */
  async function leases(): Promise<Map<number, { holder: string; epoch: number; to: string }>> {
    const all = await client.hgetall(key);
    const out = new Map<number, { holder: string; epoch: number; to: string }>();
    for (const [field, value] of Object.entries(all)) {
      if (field.startsWith('i:') || field === 't:') continue; // heartbeats and the cached ranking
      const [holder, epoch, , to] = value.split('|');
      out.set(Number(field), { holder, epoch: Number(epoch), to });
    }
    return out;
  }

  /** Every lease's `until` in the past, as if its holder had stopped renewing it. */
  async function lapseLeases(): Promise<void> {
    for (const [field, value] of Object.entries(await client.hgetall(key))) {
      if (field.startsWith('i:') || field === 't:') continue; // heartbeats and the cached ranking
      const [holder, epoch, , to, since] = value.split('|');
      await client.hset(key, field, `${holder}|${epoch}|1|${to}|${since}`);
    }
  }

  /** The instance's heartbeat in the past (but not so old that the script forgets it): it is dead. */
  const kill = (instance: string) => client.hset(key, `i:${instance}`, Date.now() - 1000);

  /**
   * The script's assignment: each shard, in order, to its first-ranked live instance by
   * rendezvous hashing (highest sha1(shard|instance)) that holds fewer than its share,
   * ceil(64 / live), of the shards before it.
   */
  function targets(live: string[]): string[] {
    const cap = Math.ceil(SHARD_COUNT / live.length);
    const load = new Map<string, number>();
    return Array.from({ length: SHARD_COUNT }, (_, shard) => {
      const ranked = live.map((inst) => ({ inst, score: createHash('sha1').update(`${shard}|${inst}`).digest('hex') })).sort((x, y) => (x.score > y.score ? -1 : 1));
      const { inst } = ranked.find(({ inst }) => (load.get(inst) ?? 0) < cap)!;
      load.set(inst, (load.get(inst) ?? 0) + 1);
      return inst;
    });
  }
  const firstRanked = (shard: number, live: string[]): string => targets(live)[shard];
  const shardsOf = (instance: string, live: string[]) => Array.from({ length: SHARD_COUNT }, (_, s) => s).filter((s) => firstRanked(s, live) === instance);
  const all = Array.from({ length: SHARD_COUNT }, (_, s) => s);

  it('gives one instance all 64 shards with epoch 1, and renews them with the same epoch', async () => {
    const a = uniqueId('a');

    const first = await tick(a);
    const second = await tick(a);

    for (const result of [first, second]) {
      expect(result.live).toBe(1);
      expect([...result.held.keys()].sort((x, y) => x - y)).toEqual(all);
      expect([...result.held.values()].every((h) => h.epoch === 1 && !h.handing)).toBe(true);
    }
    expect([...(await leases()).values()].every((l) => l.holder === a && l.epoch === 1 && l.to === '')).toBe(true);
    expect(await lines()).toEqual([]);
  });

  it('moves the shards a second instance ranks first for by a hand-over: announced, completed, epoch + 1', async () => {
    const a = uniqueId('a');
    const b = uniqueId('b');
    await tick(a);
    const moving = shardsOf(b, [a, b]);
    expect(moving.length).toBeGreaterThan(0);

    const joined = await tick(b);
    const announcing = await tick(a);
    const announced = await lines();
    const waiting = await tick(b);
    const completing = await tick(a, 'tick', moving);
    const completed = await lines();
    const taken = await tick(b);
    const kept = await tick(a);

    expect(joined).toEqual({ live: 2, held: new Map() });
    expect(announcing.live).toBe(2);
    expect(announcing.held.size).toBe(SHARD_COUNT);
    expect([...announcing.held].filter(([, h]) => h.handing).map(([s]) => s)).toEqual(moving);
    expect(announced).toEqual(moving.map((s) => handOverLine(s, b, 1)));
    expect(waiting.held.size).toBe(0);
    expect([...completing.held.keys()]).toEqual(all.filter((s) => !moving.includes(s)));
    expect(completed).toEqual(moving.map((s) => takenLine(s, b, 2)));
    expect([...taken.held]).toEqual(moving.map((s) => [s, { epoch: 2, handing: false }]));
    expect([...kept.held.values()].every((h) => h.epoch === 1 && !h.handing)).toBe(true);
    expect(kept.held.size + taken.held.size).toBe(SHARD_COUNT);
  });

  it('raises the epoch on each new holder: a shard handed over and back has epoch 3', async () => {
    const a = uniqueId('a');
    const b = uniqueId('b');
    await tick(a);
    await tick(b);
    await tick(a);
    const moving = shardsOf(b, [a, b]);
    await tick(a, 'tick', moving);
    await tick(b);
    await lines();

    const leaving = await tick(b, 'leave');
    const announced = await lines();
    await tick(b, 'leave', moving);
    const completed = await lines();
    const back = await tick(a);

    expect([...leaving.held]).toEqual(moving.map((s) => [s, { epoch: 2, handing: true }]));
    expect(announced).toEqual(moving.map((s) => handOverLine(s, a, 2)));
    expect(completed).toEqual(moving.map((s) => takenLine(s, a, 3)));
    expect(back.held.size).toBe(SHARD_COUNT);
    for (const s of all) expect(back.held.get(s)).toEqual({ epoch: moving.includes(s) ? 3 : 1, handing: false });
  });

  it('gives a lapsed lease to the first-ranked live instance without a hand-over: a new epoch when another held it, the same when it held it itself', async () => {
    const a = uniqueId('a');
    const b = uniqueId('b');
    await tick(a);
    await tick(b);
    await lapseLeases();

    const byB = await tick(b);
    const byA = await tick(a);

    expect([...byB.held]).toEqual(shardsOf(b, [a, b]).map((s) => [s, { epoch: 2, handing: false }]));
    // a held every shard before the lapse and nobody since: what it heard meanwhile stays its to route.
    expect([...byA.held]).toEqual(shardsOf(a, [a, b]).map((s) => [s, { epoch: 1, handing: false }]));
    expect(await lines()).toEqual([]);
  });

  it('gives the lapsed leases of a dead instance to the live one', async () => {
    const a = uniqueId('a');
    const b = uniqueId('b');
    await tick(a);
    await tick(b);
    await kill(a);
    await lapseLeases();

    const result = await tick(b);

    expect(result.live).toBe(1);
    expect(result.held.size).toBe(SHARD_COUNT);
    expect([...result.held.values()].every((h) => h.epoch === 2 && !h.handing)).toBe(true);
  });

  it('hands every shard over on leave; the last instance to leave removes the leases', async () => {
    const a = uniqueId('a');
    const b = uniqueId('b');
    await tick(a);
    await tick(b);
    await tick(a);
    await tick(a, 'tick', shardsOf(b, [a, b]));
    await tick(b);
    const mine = shardsOf(a, [a, b]);
    await lines();

    const leaving = await tick(a, 'leave');
    const announced = await lines();
    const done = await tick(a, 'leave', mine);
    const rest = await tick(b);
    const last = await tick(b, 'leave');

    expect(leaving.live).toBe(1);
    expect([...leaving.held]).toEqual(mine.map((s) => [s, { epoch: 1, handing: true }]));
    expect(announced).toEqual(mine.map((s) => handOverLine(s, b, 1)));
    expect(done.held.size).toBe(0);
    expect(await client.hexists(key, `i:${a}`)).toBe(0);
    expect(rest.held.size).toBe(SHARD_COUNT);
    expect(last).toEqual({ live: 0, held: new Map() });
    expect(await client.hlen(key)).toBe(0);
  });

  it('ranks the shards only when the live set changes: the assignment is kept with the set it was made for', async () => {
    const a = uniqueId('a');
    const b = uniqueId('b');
    await tick(a);
    await tick(b);
    const cached = await client.hget(key, 't:');
    await tick(a);
    await tick(b);
    const unchanged = await client.hget(key, 't:');
    await client.hset(key, 't:', `${SHARD_COUNT}|${[a, b].sort().join(',')}\n${Array(SHARD_COUNT).fill(b).join(',')}`);
    await lapseLeases();
    const byA = await tick(a); // the kept assignment names b for every shard: a takes none

    expect(cached).toBe(`${SHARD_COUNT}|${[a, b].sort().join(',')}\n${targets([a, b]).join(',')}`);
    expect(unchanged).toBe(cached);
    expect(byA.held.size).toBe(0);
  });

  it('splits 64 shards over 3 instances evenly (at most ceil(64 / 3) each), as the bounded rendezvous hashing assigns them', async () => {
    const names = [uniqueId('a'), uniqueId('b'), uniqueId('c')];
    const [a, b, c] = names;
    await tick(a);
    await tick(b);
    await tick(c);
    await tick(a);
    await tick(
      a,
      'tick',
      all.filter((s) => firstRanked(s, names) !== a),
    );
    await tick(b);
    await tick(c);

    const stored = await leases();

    for (const name of names) {
      const held = [...stored]
        .filter(([, l]) => l.holder === name)
        .map(([s]) => s)
        .sort((x, y) => x - y);
      expect(held).toEqual(shardsOf(name, names));
      expect(held.length).toBeGreaterThanOrEqual(20);
      expect(held.length).toBeLessThanOrEqual(22);
    }
    expect(stored.size).toBe(SHARD_COUNT);
  });

  it('does not take back, with an older epoch, a shard whose hand-over it completed after the target left', async () => {
    const a = uniqueId('a');
    const b = uniqueId('b');
    await tick(a);
    await tick(b);
    await tick(a);
    const moving = shardsOf(b, [a, b]);
    await tick(b, 'leave'); // b goes before the hand-over completes

    const completing = await tick(a, 'tick', moving);
    const afterComplete = await leases();
    await lapseLeases();
    const retaken = await tick(a);

    for (const s of moving) {
      expect(completing.held.has(s)).toBe(false);
      expect(afterComplete.get(s)).toEqual({ holder: b, epoch: 2, to: '' });
      expect(retaken.held.get(s)).toEqual({ epoch: 3, handing: false });
    }
  });

  it('completes a hand-over by itself when its announcement was never completed (3 lease times)', async () => {
    const a = uniqueId('a');
    const b = uniqueId('b');
    await tick(a);
    await tick(b);
    await tick(a);
    const moving = shardsOf(b, [a, b]);
    await lines();
    for (const s of moving) {
      const [holder, epoch, until, to] = (await client.hget(key, String(s)))!.split('|');
      await client.hset(key, String(s), `${holder}|${epoch}|${until}|${to}|${Date.now() - 4 * LEASE_MS}`);
    }

    const result = await tick(a);
    const taken = await tick(b);

    expect(await lines()).toEqual(moving.map((s) => takenLine(s, b, 2)));
    expect(moving.some((s) => result.held.has(s))).toBe(false);
    expect(result.held.size).toBe(SHARD_COUNT - moving.length);
    expect([...taken.held]).toEqual(moving.map((s) => [s, { epoch: 2, handing: false }]));
  });

  describe('ShardsService', () => {
    const services: ShardsService[] = [];
    const make = (instanceId: string) => {
      const keys = Object.assign(new QueueKeys(false), { shards: key, controlChannel: control });
      const service = new ShardsService(client, withDefaults({ instanceId }), keys, metrics);
      services.push(service);
      service.listen(); // as the router does once its subscriptions are confirmed
      return service;
    };
    /** One tick now (the service's timer is not started in these tests). */
    const tickOf = (service: ShardsService) => (service as unknown as { tick(completes?: number[]): Promise<void> }).tick();
    /** A service on a connection of its own, whose tick answers a test can hold back or fail. */
    const makeOwn = (instanceId: string) => {
      const own = redis.client();
      const keys = Object.assign(new QueueKeys(false), { shards: key, controlChannel: control });
      const service = new ShardsService(own, withDefaults({ instanceId }), keys, metrics);
      services.push(service);
      service.listen();
      return { service, client: own };
    };
    /** a holds every shard and b has joined: a announces the hand-overs of b's shards, both hear the lines. */
    const startHandOver = async (a: ShardsService, b: ShardsService, idA: string, idB: string) => {
      await tickOf(b);
      const moving = shardsOf(idB, [idA, idB]);
      await tickOf(a);
      const handed: number[] = [];
      for (const line of await lines()) {
        const shard = a.control(line);
        b.control(line);
        if (shard !== undefined) handed.push(shard);
      }
      return { moving, handed };
    };

    afterEach(() => {
      for (const service of services.splice(0)) service.onApplicationShutdown();
    });

    it('routes every shard with epoch 1 when it is alone', async () => {
      const a = make(uniqueId('a'));

      await tickOf(a);

      expect(a.held).toBe(SHARD_COUNT);
      expect(all.every((s) => a.epochFor(s) === 1 && a.holds(s))).toBe(true);
      expect(a.handingOver).toBe(false);
    });

    it('hands shards over as the control lines come: the new holder waits for the completion, then routes with epoch 2', async () => {
      const idA = uniqueId('a');
      const idB = uniqueId('b');
      const a = make(idA);
      const b = make(idB);
      await tickOf(a);
      const { moving, handed } = await startHandOver(a, b, idA, idB);
      const during = { a: moving.map((s) => a.epochFor(s)), b: moving.map((s) => b.epochFor(s)), handing: a.handingOver };
      for (const shard of handed) await a.complete(shard);
      for (const line of await lines()) {
        a.control(line);
        b.control(line);
      }

      expect(handed).toEqual(moving);
      expect(during).toEqual({ a: moving.map(() => NOT_MINE), b: moving.map(() => PENDING), handing: true });
      expect(a.handingOver).toBe(false);
      expect(moving.map((s) => b.epochFor(s))).toEqual(moving.map(() => 2));
      expect(b.held).toBe(moving.length);
      expect(a.held).toBe(SHARD_COUNT - moving.length);
      await expect(b.whenHeld(moving[0])).resolves.toBe(2);
      await expect(a.whenHeld(moving[0])).resolves.toBe(NOT_MINE);
    });

    it('keeps a shard taken by a completion line when the answer to a tick Redis ran before the completion arrives after the line', async () => {
      const idA = uniqueId('a');
      const idB = uniqueId('b');
      const a = make(idA);
      await tickOf(a); // a holds every shard before b joins (b's own connection: no race with a's first tick)
      // b's own connection, whose tick answers are held back: the completion line (heard on the
      // subscriber connection) overtakes the answer to a tick Redis ran before the completion.
      const { service: b, client: bClient } = makeOwn(idB);
      const { moving, handed } = await startHandOver(a, b, idA, idB);

      const run = bClient.rmShards.bind(bClient);
      let ran!: () => void;
      let release!: () => void;
      const executed = new Promise<void>((resolve) => (ran = resolve));
      const held = new Promise<void>((resolve) => (release = resolve));
      bClient.rmShards = ((...args: (string | number)[]) =>
        run(...args).then(async (answer) => {
          ran();
          await held;
          return answer;
        })) as typeof bClient.rmShards;
      const stale = tickOf(b);
      await executed; // Redis ran b's tick: a still holds the moving shards
      for (const shard of handed) await a.complete(shard);
      for (const line of await lines()) b.control(line);
      const afterLine = moving.map((s) => b.epochFor(s));
      release();
      await stale;

      expect(afterLine).toEqual(moving.map(() => 2));
      expect(moving.map((s) => b.epochFor(s))).toEqual(moving.map(() => 2));
      expect(moving.map((s) => a.epochFor(s))).toEqual(moving.map(() => NOT_MINE));
      // The next answer (asked after the line) is authoritative again, and agrees.
      bClient.rmShards = run as typeof bClient.rmShards;
      await tickOf(b);
      expect(moving.map((s) => b.epochFor(s))).toEqual(moving.map(() => 2));
    });

    it('sends a completion again with the next tick when the tick that carried it failed (Redis away)', async () => {
      const idA = uniqueId('a');
      const idB = uniqueId('b');
      const { service: a, client: aClient } = makeOwn(idA);
      await tickOf(a); // a holds every shard before b joins (its own connection: no race with b's first tick)
      const b = make(idB);
      const { moving, handed } = await startHandOver(a, b, idA, idB);

      const run = aClient.rmShards.bind(aClient);
      aClient.rmShards = (() => Promise.reject(new Error('Connection is closed.'))) as typeof aClient.rmShards;
      for (const shard of handed) await a.complete(shard);
      const whileAway = (await lines()).filter((line) => parseControlLine(line)?.kind === 'taken');
      aClient.rmShards = run as typeof aClient.rmShards;
      await tickOf(a);
      for (const line of await lines()) b.control(line);

      expect(whileAway).toEqual([]);
      expect(moving.map((s) => b.epochFor(s))).toEqual(moving.map(() => 2));
    });

    it('routes a message heard under a lapsed lease unless the shard is held with a higher epoch since (another instance held it in between)', async () => {
      const a = make(uniqueId('a'));
      await tickOf(a);
      const internals = a as unknown as { leaseUntil: number; owned: Map<number, number> };

      internals.leaseUntil = 0; // this process stalled past its lease; Redis still has it as the holder
      const heard = a.epochFor(5);
      const renewed = await a.whenHeld(5, heard);
      // The shard went to another instance and came back (epoch 3) while the message waited.
      internals.owned.set(5, 3);
      const since = await a.whenHeld(5, lapsed(1));
      // Redis restarted empty: the leases start again at epoch 1, below what the message was heard with.
      const afterReset = await a.whenHeld(5, lapsed(7));

      expect(heard).toBe(lapsed(1));
      expect(renewed).toBe(1);
      expect(since).toBe(NOT_MINE);
      expect(afterReset).toBe(3);
      expect(await a.whenHeld(5, PENDING)).toBe(3);
    });

    it('announces every shard it holds on leave', async () => {
      const idA = uniqueId('a');
      const idB = uniqueId('b');
      const a = make(idA);
      const b = make(idB);
      await tickOf(a);
      await tickOf(b);

      await a.leave();

      // Each shard once, to b: those b ranks first for at a's tick, the rest at the leave.
      expect((await lines()).sort()).toEqual(all.map((s) => handOverLine(s, idB, 1)).sort());
    });
  });
});
