import { Module } from '@nestjs/common';
import { PresenceModule } from '../presence/presence.module';
import { QueueModule } from '../queue/queue.module';
import { DeliveryService } from './delivery.service';

@Module({ imports: [QueueModule, PresenceModule], providers: [DeliveryService], exports: [DeliveryService] })
export class DeliveryModule {}
