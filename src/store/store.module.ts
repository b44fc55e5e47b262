import { Module } from '@nestjs/common';
import { DeliveryModule } from '../delivery/delivery.module';
import { QueueModule } from '../queue/queue.module';
import { StoreService } from './store.service';

/** StoreService: where every publish path (raw PUBLISH, HTTP, inbox) stores its messages. */
@Module({ imports: [QueueModule, DeliveryModule], providers: [StoreService], exports: [StoreService] })
export class StoreModule {}
