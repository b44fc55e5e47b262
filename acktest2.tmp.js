const Redis = require('/work/main/node_modules/ioredis');
const { QueueService } = require('/work/main/dist/queue/queue.service');
const { QueueKeys } = require('/work/main/dist/queue/queue-keys');
const { MetricsService } = require('/work/main/dist/metrics/metrics.service');
const { withDefaults } = require('/work/main/dist/config/messenger-options');
const { buildEnvelope } = require('/work/main/dist/protocol/envelope');
(async () => {
  const r = new Redis(6379);
  const keys = new QueueKeys(false);
  const q = new QueueService(r, withDefaults({}), keys, new MetricsService());
  const user = 'acktest-' + Date.now();
  await r.hset(keys.state(user), 'c:conn1', 'inst');
  const ids = [];
  const envs = [];
  for (let i = 0; i < 5000; i++) { const id = 'id' + i; ids.push(id); envs.push(buildEnvelope({ id, channel: 'rm.users.' + user, payload: 'x'.repeat(100), ts: Date.now() })); }
  for (let i = 0; i < envs.length; i += 1000) await r.rpush(keys.owed(user), ...envs.slice(i, i + 1000));
  await r.call('CONFIG', 'RESETSTAT');
  for (let k = 0; k < 40; k++) {
    const batch = ids.slice(k * 50, k * 50 + 50).map((id, j) => [id, k * 50 + j]);
    await q.ack(user, batch, 'inst', { position: 1000 + k * 50, limit: 50 });
  }
  console.log((await r.info('commandstats')).split('\n').filter((l) => /evalsha|lrange|ltrim/.test(l)).join('\n'));
  await r.call('CONFIG', 'RESETSTAT');
  for (let k = 0; k < 40; k++) await q.read(user, 3000 + k * 50, 50);
  console.log('read', (await r.info('commandstats')).split('\n').filter((l) => /evalsha/.test(l)).join('\n'));
  await r.del(keys.state(user), keys.owed(user));
  r.disconnect();
})();
