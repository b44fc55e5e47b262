import { Module } from '@nestjs/common';
import { DemoController } from './demo.controller';

/**
 * The demo page at /demo and its send route. The standalone app imports it only when
 * DEMO=true; it uses RedMessenger's global Redis client and options.
 */
@Module({ controllers: [DemoController] })
export class DemoModule {}
