import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { DeliveryModule } from '../delivery/delivery.module';
import { RouterModule } from '../router/router.module';
import { MessengerGateway } from './messenger.gateway';

@Module({ imports: [AuthModule, DeliveryModule, RouterModule], providers: [MessengerGateway], exports: [MessengerGateway] })
export class MessengerModule {}
