/**
 * RedMessenger as a module inside a host application: the override paths the
 * README promises (a client the host owns, a token check of the host's own).
 */
import { connectionCount } from './support/queue-entries';
import { Injectable, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Redis } from 'ioredis';
import type { AddressInfo } from 'node:net';
import { RedMessengerModule, TokenVerifier, useRedMessengerAdapter } from '../src';
import { uniqueId } from './support/ids';
import { startRedis, type TestRedis } from './support/redis';
import { TestClient } from './support/ws-client';

@Injectable()
class SesameVerifier extends TokenVerifier {
  readonly seen: string[] = [];

  async verify(id: string, token: string | undefined): Promise<boolean> {
    this.seen.push(id);
    return token === `sesame-${id}`;
  }
}

describe('RedMessengerModule in a host application', () => {
  let redis: TestRedis;
  let own: Redis;
  let app: INestApplication;
  let wsUrl: string;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    own = redis.client({ connectionName: 'host-owned' });
    const moduleRef = await Test.createTestingModule({
      imports: [RedMessengerModule.forRoot({ redis: own, wsPath: '/push', instanceId: uniqueId('host'), tokenVerifier: SesameVerifier })],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    useRedMessengerAdapter(app);
    await app.listen(0, '127.0.0.1');
    wsUrl = `ws://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}/push`;
  });

  afterEach(() => {
    for (const client of clients.splice(0)) client.terminate();
  });

  afterAll(async () => {
    await app?.close();
    await redis?.close();
  });

  const connect = async () => {
    const client = await TestClient.connect(wsUrl, { autoAck: true });
    clients.push(client);
    return client;
  };

  it("checks tokens with the host's TokenVerifier", async () => {
    const id = uniqueId();
    const refused = await connect();
    refused.send('identify', { id, token: 'wrong' });
    expect((await refused.next((f) => f.event === 'error')).data.code).toBe('UNAUTHORIZED');
    expect((await refused.closed()).code).toBe(4401);

    const accepted = await connect();
    expect((await accepted.identify(id, `sesame-${id}`)).data).toMatchObject({ id, queued: 0 });
    expect(app.get(TokenVerifier)).toBeInstanceOf(SesameVerifier);
    expect((app.get(TokenVerifier) as SesameVerifier).seen).toEqual([id, id]);
  });

  it("runs on the host's Redis client, on the configured path, and delivers", async () => {
    const id = uniqueId();
    const client = await connect();
    await client.identify(id, `sesame-${id}`);

    await own.publish(`rm.users.${id}`, 'through the host');

    expect((await client.messages(1))[0].data.payload).toBe('through the host');
    expect(await connectionCount(own, id)).toBe(1);
  });

  it("leaves the host's client open when the application closes", async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [RedMessengerModule.forRoot({ redis: own, instanceId: uniqueId('short') })],
    }).compile();
    const short = moduleRef.createNestApplication({ logger: false });
    useRedMessengerAdapter(short);
    await short.init();

    await short.close();

    expect(own.status).toBe('ready');
    expect(await own.ping()).toBe('PONG');
  });
});
