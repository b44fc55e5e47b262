import { Module } from '@nestjs/common';
import { PublishModule } from '../publish/publish.module';
import { DemoController } from './demo.controller';

/**
 * The demo page at /demo and its send and take-back routes. The standalone app imports it
 * only when DEMO=true; it uses RedMessenger's options and PublishModule's PublishService
 * (the same instance as RedMessengerModule's: Nest keeps one of each module).
 */
@Module({ imports: [PublishModule], controllers: [DemoController] })
export class DemoModule {}
