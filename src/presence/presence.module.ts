import { Module } from '@nestjs/common';
import { QueueModule } from '../queue/queue.module';
import { PresenceService } from './presence.service';
import { ShardsService } from './shards.service';

@Module({ imports: [QueueModule], providers: [PresenceService, ShardsService], exports: [PresenceService, ShardsService] })
export class PresenceModule {}
