import { Module } from '@nestjs/common';
import { PresenceModule } from '../presence/presence.module';
import { QueueModule } from '../queue/queue.module';
import { UnreadService } from './unread.service';

/** The `unread` sweep (EventsModule provides the EventsService it writes through). */
@Module({ imports: [QueueModule, PresenceModule], providers: [UnreadService], exports: [UnreadService] })
export class UnreadModule {}
