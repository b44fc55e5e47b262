import { Module } from '@nestjs/common';
import { PresenceModule } from '../presence/presence.module';
import { QueueModule } from '../queue/queue.module';
import { StoreModule } from '../store/store.module';
import { ExpiryService } from './expiry.service';
import { RouterService } from './router.service';

@Module({ imports: [QueueModule, PresenceModule, StoreModule], providers: [RouterService, ExpiryService], exports: [RouterService, ExpiryService] })
export class RouterModule {}
