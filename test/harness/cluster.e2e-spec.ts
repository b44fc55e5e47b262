// Proves the Cluster and Sentinel harnesses against real redis-server processes.
import Redis from 'ioredis';
import { startCluster, TestCluster } from '../support/cluster';
import { uniqueId } from '../support/ids';
import { ask } from '../support/redis-node';
import { startSentinel, TestSentinel } from '../support/sentinel';
import { waitFor } from '../support/wait';

describe('startCluster with 3 masters', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(() => cluster?.close());

  it('forms: every node says cluster_state:ok with 16384 slots, seeds name every node', async () => {
    expect(cluster.nodes).toHaveLength(3);
    expect(cluster.seeds).toBe(cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(','));
    for (const n of cluster.nodes) {
      const info = String(await ask(n.port, 'CLUSTER', 'INFO'));
      expect(info).toContain('cluster_state:ok');
      expect(info).toContain('cluster_slots_assigned:16384');
      expect(info).toContain('cluster_size:3');
    }
  });

  it('puts keys with different hash tags on different masters, and a Cluster client reads them back', async () => {
    // Tags until one key per master: three masters split the slots, so this ends quickly.
    const byMaster = new Map<number, string>();
    for (let i = 0; byMaster.size < 3 && i < 100; i++) {
      const key = `{${uniqueId('t')}}:q`;
      const m = await cluster.masterOf(key);
      if (!byMaster.has(m.port)) byMaster.set(m.port, key);
    }
    expect([...byMaster.keys()].sort()).toEqual(cluster.nodes.map((n) => n.port).sort());
    const c = cluster.client();
    for (const [port, key] of byMaster) {
      await c.set(key, `on-${port}`);
      expect(await c.get(key)).toBe(`on-${port}`);
      expect(await ask(port, 'GET', key)).toBe(`on-${port}`); // stored on the master masterOf named
    }
  });

  it('delivers a PUBLISH on any node to a PSUBSCRIBE through the Cluster client', async () => {
    const sub = cluster.client();
    const heard: string[] = [];
    sub.on('pmessage', (_pattern: string, channel: string, message: string) => heard.push(`${channel}=${message}`));
    const prefix = uniqueId('rm.users');
    await sub.psubscribe(`${prefix}.*`);
    // Cluster PUBLISH is broadcast over the bus, so every node's publish reaches the subscriber.
    const expected = cluster.nodes.map((n) => `${prefix}.${n.port}=hello`);
    for (const n of cluster.nodes) await ask(n.port, 'PUBLISH', `${prefix}.${n.port}`, 'hello');
    await waitFor(() => heard.length >= 3, 5000, 'three pmessages');
    expect(heard.sort()).toEqual(expected.sort());
  });

  it('runs a script on two keys sharing the hash tag {u1}, and refuses keys in two slots', async () => {
    const c = cluster.client();
    const [a, b] = [`{u1}:${uniqueId('a')}`, `{u1}:${uniqueId('b')}`];
    const script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])";
    expect(await c.eval(script, 2, a, b, 'x')).toBe(1);
    expect(await c.get(a)).toBe('x');
    expect(await c.get(b)).toBe('1');
    await expect(c.eval(script, 2, `{u1}:${uniqueId('a')}`, `{u2}:${uniqueId('b')}`, 'x')).rejects.toThrow(/CROSSSLOT/);
  });

  it('killNode stops a master, the cluster notices, and startNode brings it back empty and serving', async () => {
    const c = cluster.client();
    const key = `{${uniqueId('k')}}:v`;
    await c.set(key, 'before');
    const m = await cluster.masterOf(key);
    await cluster.killNode(m.port);
    await expect(ask(m.port, 'PING')).rejects.toThrow();
    const other = cluster.nodes.find((n) => n.port !== m.port)!;
    // Without replicas its slots are uncovered: the others go to cluster_state:fail.
    await waitFor(async () => String(await ask(other.port, 'CLUSTER', 'INFO')).includes('cluster_state:fail'), 15_000, 'cluster_state:fail');
    await cluster.startNode(m.port);
    expect(await cluster.masterOf(key)).toEqual(m); // same node owns the slot again
    expect(await c.get(key)).toBeNull(); // nothing was persisted
    await c.set(key, 'after');
    expect(await c.get(key)).toBe('after');
  });

  it('failoverMasterOf refuses a cluster without replicas', async () => {
    await expect(cluster.failoverMasterOf('k')).rejects.toThrow(/replicasPerMaster: 1/);
  });
});

describe('startCluster with 3 masters and a replica each', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
  });
  afterAll(() => cluster?.close());

  it('fails a master over to its replica, and a Cluster client reads what was replicated', async () => {
    expect(cluster.nodes).toHaveLength(6);
    const c = cluster.client();
    const key = `{${uniqueId('f')}}:v`;
    const old = await cluster.masterOf(key);
    // On the master itself: WAIT counts replicas that have this connection's writes.
    const direct = new Redis({ host: old.host, port: old.port });
    try {
      await direct.set(key, 'replicated');
      expect(await direct.wait(1, 0)).toBe(1);
    } finally {
      direct.disconnect();
    }
    const promoted = await cluster.failoverMasterOf(key);
    expect(promoted.port).not.toBe(old.port);
    expect(await cluster.masterOf(key)).toEqual(promoted);
    expect(await c.get(key)).toBe('replicated');
    await c.set(key, 'after');
    expect(await ask(promoted.port, 'GET', key)).toBe('after');
    // The old master rejoins as a replica of the promoted one.
    await cluster.startNode(old.port);
    expect(((await ask(old.port, 'ROLE')) as unknown[]).slice(0, 3)).toEqual(['slave', '127.0.0.1', promoted.port]);
  });
});

describe('startSentinel', () => {
  let sentinel: TestSentinel;
  beforeAll(async () => {
    sentinel = await startSentinel();
  });
  afterAll(() => sentinel?.close());

  it('fails the master over to the replica; the sentinel-backed client follows and reads what was replicated', async () => {
    expect(sentinel.masterName).toBe('mymaster');
    const old = await sentinel.master();
    expect(sentinel.sentinels).toMatch(/^127\.0\.0\.1:\d+$/);
    const c = sentinel.client();
    const key = uniqueId('s');
    await c.set(key, 'replicated');
    expect(await c.wait(1, 0)).toBe(1);
    await sentinel.failover();
    const promoted = await sentinel.master();
    expect(promoted.port).not.toBe(old.port);
    expect(await c.get(key)).toBe('replicated');
    await c.set(key, 'after');
    expect(await ask(promoted.port, 'GET', key)).toBe('after');
    await sentinel.restartOld();
    expect(((await ask(old.port, 'ROLE')) as unknown[]).slice(0, 3)).toEqual(['slave', '127.0.0.1', promoted.port]);
    await waitFor(async () => (await ask(old.port, 'GET', key)) === 'after', 5000, 'the old master to replicate the new write');
  });
});

describe('harness errors', () => {
  it('startCluster reports a missing redis-server binary clearly', async () => {
    const saved = process.env.REDIS_SERVER_BIN;
    process.env.REDIS_SERVER_BIN = '/nonexistent/redis-server';
    try {
      await expect(startCluster()).rejects.toThrow(/Could not run \/nonexistent\/redis-server/);
    } finally {
      if (saved === undefined) delete process.env.REDIS_SERVER_BIN;
      else process.env.REDIS_SERVER_BIN = saved;
    }
  });
});
