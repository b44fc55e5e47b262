/**
 * ROUTE_BUFFER_BYTES bounds what the route buffer really holds: a flood of small
 * PUBLISHes heard while routing cannot proceed (Redis paused for writes right after
 * them, `CLIENT PAUSE ... WRITE`) grows the server's heap by about the setting, not
 * several times it; past it, new PUBLISHes are dropped and counted; once Redis takes
 * writes again, what was held is routed.
 */
import type { Redis } from 'ioredis';
import { uniqueId } from './support/ids';
import { sleep } from './support/proc';
import { startRedis, type TestRedis } from './support/redis';
import { startServer, type TestServer } from './support/server';
import { waitFor } from './support/wait';

const MiB = 1 << 20;

describe('the route buffer under a flood of small PUBLISHes', () => {
  let redis: TestRedis;
  let r: Redis;
  let server: TestServer;

  afterEach(async () => {
    await r?.client('UNPAUSE').catch(() => undefined);
    await server?.stop();
    await redis?.close();
  });

  const scrape = async () => {
    const text = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    const sample = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    return { heap: sample('nodejs_heap_size_used_bytes'), rss: sample('process_resident_memory_bytes'), overload: sample('redmessenger_messages_dropped_total\\{reason="overload"\\}') };
  };

  it.each([
    // [what, ROUTE_BUFFER_BYTES, PUBLISHes]: about three times what the buffer holds.
    ['to 50 users', 16 * MiB, 300_000],
    ['to a group', 8 * MiB, 150_000],
  ])('%s: the heap grows by about ROUTE_BUFFER_BYTES before it drops, then what it held is routed', async (what, buffer, flood) => {
    redis = await startRedis({ restartable: true }); // a redis-server of our own: CONFIG and CLIENT PAUSE
    r = redis.client();
    await r.config('SET', 'client-output-buffer-limit', 'pubsub 0 0 0'); // the flood reaches the server whole
    server = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log', ROUTE_BUFFER_BYTES: String(buffer) });
    const users = Array.from({ length: what === 'to a group' ? 1 : 50 }, () => uniqueId('flood'));
    const cid = uniqueId('g');
    await r.sadd(`rm:channels:${cid}:subscribers`, users[0]);
    const before = await scrape();

    // The PUBLISHes, then the pause, in one transaction: the router hears them all and its first store waits.
    const tx = r.multi();
    for (let i = 0; i < flood; i++) tx.publish(what === 'to a group' ? `rm.channels.${cid}` : `rm.users.${users[i % users.length]}`, `m${i}`);
    tx.client('PAUSE', '120000', 'WRITE');
    await tx.exec();
    let last = -1;
    await waitFor(
      async () => {
        const { overload } = await scrape();
        const settled = overload > 0 && overload === last;
        last = overload;
        if (!settled) await sleep(500);
        return settled;
      },
      60_000,
      'the buffer to fill and drop what comes after (the dropped count settled)',
    );
    const full = await scrape();
    const held = flood - full.overload;
    const mib = (bytes: number) => (bytes / MiB).toFixed(1);
    console.log(
      `ROUTE_BUFFER_BYTES ${mib(buffer)} MiB, ${flood} PUBLISHes ${what}: held ${held}; heap used ${mib(before.heap)} -> ${mib(full.heap)} MiB ` +
        `(+${mib(full.heap - before.heap)}), RSS ${mib(before.rss)} -> ${mib(full.rss)} MiB (+${mib(full.rss - before.rss)})`,
    );

    expect(full.heap - before.heap).toBeLessThan(2 * buffer);

    await r.client('UNPAUSE');
    await waitFor(
      async () => {
        let queued = 0;
        for (const user of users) queued += await r.llen(`rm:users:${user}:messages`);
        return queued === held;
      },
      60_000,
      'every held message to be routed',
    );
  });
});
