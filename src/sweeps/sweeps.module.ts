import { Module } from '@nestjs/common';
import { QueueModule } from '../queue/queue.module';
import { RouterModule } from '../router/router.module';
import { ExpiryService } from './expiry.service';
import { NotifyService } from './notify.service';
import { SweepsService } from './sweeps.service';
import { UnreadService } from './unread.service';

/**
 * The deployment-wide sweeps run by shard 0's holder from one timer (SweepsService): queue
 * expiry, `unread` and absences (`notify`). EventsModule provides the EventsService they write through.
 */
@Module({
  imports: [QueueModule, RouterModule],
  providers: [SweepsService, ExpiryService, UnreadService, NotifyService],
  exports: [ExpiryService, UnreadService, NotifyService],
})
export class SweepsModule {}
