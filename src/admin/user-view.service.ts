import { Injectable } from '@nestjs/common';
import { envelopeTs } from '../protocol/envelope';
import { QueueKeys } from '../redis/keys';
import type { RedisClient } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';
import type { UserView } from './user-view.dto';

/** Reads a user's view from Redis in one transaction (one user's keys: one slot on a Cluster), so counts agree. */
@Injectable()
export class UserViewService {
  constructor(
    @InjectRedis() private readonly redis: RedisClient,
    private readonly keys: QueueKeys,
  ) {}

  async view(id: string, now = Date.now()): Promise<UserView> {
    const state = this.keys.state(id);
    const queue = this.keys.queue(id);
    const answers = await this.redis.multi().hkeys(state).hget(state, 'x').llen(queue).lindex(queue, 0).llen(this.keys.owed(id)).get(this.keys.dropped(id)).exec();
    if (!answers) throw new Error('The transaction was aborted');
    const failed = answers.find(([error]) => error);
    if (failed) throw failed[0];
    const [fields, x, queued, head, owedLength, dropped] = answers.map(([, value]) => value) as [string[], string | null, number, string | null, number, string | null];
    const connections = fields.filter((field) => field.startsWith('c:')).length;
    let oldest: number | null = null;
    if (head !== null) {
      // A raw entry (RPUSHed by another program) has no ts: the queue index's time for the user, when it has one.
      const ts = envelopeTs(head) ?? Number((await this.redis.zscore(this.keys.queueIndex, id)) ?? NaN);
      if (Number.isFinite(ts)) oldest = Math.max(0, (now - ts) / 1000);
    }
    return {
      id,
      online: connections > 0,
      connections,
      queued,
      owed: Math.max(0, owedLength - (x ? x.split(',').length : 0)),
      oldestQueuedAgeSeconds: oldest,
      dropped: Number(dropped ?? 0),
    };
  }
}
