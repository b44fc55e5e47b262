import { Module } from '@nestjs/common';
import { DeliveryModule } from '../delivery/delivery.module';
import { PresenceModule } from '../presence/presence.module';
import { QueueModule } from '../queue/queue.module';
import { ExpiryService } from './expiry.service';
import { RouterService } from './router.service';
import { StoreService } from './store.service';

@Module({ imports: [QueueModule, PresenceModule, DeliveryModule], providers: [RouterService, ExpiryService, StoreService], exports: [RouterService, ExpiryService, StoreService] })
export class RouterModule {}
