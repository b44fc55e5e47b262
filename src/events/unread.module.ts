import { Module } from '@nestjs/common';
import { PresenceModule } from '../presence/presence.module';
import { QueueModule } from '../queue/queue.module';
import { NotifyService } from './notify.service';
import { UnreadService } from './unread.service';

/** The `unread` and absence (`notify`) sweeps (EventsModule provides the EventsService they write through). */
@Module({ imports: [QueueModule, PresenceModule], providers: [UnreadService, NotifyService], exports: [UnreadService, NotifyService] })
export class UnreadModule {}
