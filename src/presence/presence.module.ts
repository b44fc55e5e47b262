import { Module } from '@nestjs/common';
import { QueueModule } from '../queue/queue.module';
import { PresenceService } from './presence.service';

@Module({ imports: [QueueModule], providers: [PresenceService], exports: [PresenceService] })
export class PresenceModule {}
