/**
 * Hooks for host applications (README): a DeliveryListener given to
 * `RedMessengerModule.forRoot({ listener })` hears delivered, queued, acked and
 * dropped, synchronously, with small event objects; a hook that throws is logged
 * and ignored, and delivery goes on.
 */
import { Injectable, type INestApplication, type LoggerService } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Redis } from 'ioredis';
import type { AddressInfo } from 'node:net';
import { DeliveryListener, RedMessengerModule, useRedMessengerAdapter, type DroppedEvent, type MessageEvent, type QueuedEvent } from '../src';
import { uniqueId } from './support/ids';
import { startRedis, type TestRedis } from './support/redis';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

type Heard = { hook: 'delivered' | 'acked'; event: MessageEvent } | { hook: 'queued'; event: QueuedEvent } | { hook: 'dropped'; event: DroppedEvent };

@Injectable()
class RecordingListener extends DeliveryListener {
  static heard: Heard[] = [];
  static throwing = false;

  delivered(event: MessageEvent): void {
    this.note({ hook: 'delivered', event });
  }

  queued(event: QueuedEvent): void {
    this.note({ hook: 'queued', event });
  }

  acked(event: MessageEvent): void {
    this.note({ hook: 'acked', event });
  }

  dropped(event: DroppedEvent): void {
    this.note({ hook: 'dropped', event });
  }

  private note(heard: Heard): void {
    RecordingListener.heard.push(heard);
    if (RecordingListener.throwing) throw new Error(`listener broke on ${heard.hook}`);
  }
}

const errors: string[] = [];
const quiet: LoggerService = {
  log: () => undefined,
  warn: () => undefined,
  error: (message: unknown) => void errors.push(String(message)),
};

const heardBy = (user: string) => RecordingListener.heard.filter((h) => h.event.user === user);

describe('DeliveryListener in a host application', () => {
  let redis: TestRedis;
  let own: Redis;
  let app: INestApplication;
  let wsUrl: string;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    own = redis.client();
    const moduleRef = await Test.createTestingModule({
      imports: [RedMessengerModule.forRoot({ redis: own, instanceId: uniqueId('host'), maxQueueLength: 2, listener: RecordingListener })],
    }).compile();
    app = moduleRef.createNestApplication({ logger: quiet });
    useRedMessengerAdapter(app);
    await app.listen(0, '127.0.0.1');
    wsUrl = `ws://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}/`;
  });

  afterEach(() => {
    RecordingListener.throwing = false;
    for (const client of clients.splice(0)) client.terminate();
  });

  afterAll(async () => {
    await app?.close();
    await redis?.close();
  });

  const connect = async (autoAck = false) => {
    const client = await TestClient.connect(wsUrl, { autoAck });
    clients.push(client);
    return client;
  };

  it('hears queued and dropped while the user is offline, then delivered and acked', async () => {
    const user = uniqueId('hooked');
    const channel = `rm.users.${user}`;
    for (let i = 0; i < 3; i++) await own.publish(channel, `m${i}`);
    // Messages heard together are stored together: one queued hook per batch.
    const sum = (hook: string) => heardBy(user).reduce((n, h) => n + (h.hook === hook ? (h.event as QueuedEvent).count : 0), 0);
    await waitFor(() => sum('queued') === 3 && sum('dropped') === 1, 5000, 'three queued and one dropped').catch((e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(heardBy(user))}`);
    });
    const offline = heardBy(user);
    for (const h of offline) {
      expect(h).toEqual(h.hook === 'queued' ? { hook: 'queued', event: { user, count: expect.any(Number) } } : { hook: 'dropped', event: { user, count: 1, reason: 'overflow' } });
    }

    const client = await connect();
    await client.identify(user);
    const messages = await client.messages(2);
    await waitFor(() => heardBy(user).filter((h) => h.hook === 'delivered').length === 2, 5000, 'two delivered hooks');
    client.ack(messages.map((m) => m.data.id));
    await waitFor(() => heardBy(user).filter((h) => h.hook === 'acked').length === 2, 5000, 'two acked hooks');

    const rest = heardBy(user).slice(offline.length);
    expect(rest).toEqual([
      { hook: 'delivered', event: { user, id: messages[0].data.id, channel } },
      { hook: 'delivered', event: { user, id: messages[1].data.id, channel } },
      { hook: 'acked', event: { user, id: messages[0].data.id, channel } },
      { hook: 'acked', event: { user, id: messages[1].data.id, channel } },
    ]);
    expect(errors).toEqual([]);
  });

  it('logs a hook that throws, and delivers and acks as if it had not', async () => {
    RecordingListener.throwing = true;
    const user = uniqueId('broken');
    const client = await connect(true);
    await client.identify(user);
    await own.publish(`rm.users.${user}`, 'still delivered');

    expect((await client.messages(1))[0].data.payload).toBe('still delivered');
    await waitFor(() => heardBy(user).some((h) => h.hook === 'acked'), 5000, 'the acked hook');
    await waitFor(async () => (await own.llen(`rm:users:${user}:owed`)) === 0, 5000, 'the ack to be stored');
    expect(errors).toEqual(
      expect.arrayContaining([expect.stringMatching(/DeliveryListener\.delivered failed \(ignored\): listener broke on delivered/), expect.stringMatching(/DeliveryListener\.acked failed/)]),
    );
  });
});
