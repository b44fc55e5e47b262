import { Module } from '@nestjs/common';
import { PresenceModule } from '../presence/presence.module';
import { QueueModule } from '../queue/queue.module';
import { StoreModule } from '../store/store.module';
import { RouterService } from './router.service';

@Module({ imports: [QueueModule, PresenceModule, StoreModule], providers: [RouterService], exports: [RouterService] })
export class RouterModule {}
