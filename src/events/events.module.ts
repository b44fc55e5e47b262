import { Global, Module } from '@nestjs/common';
import { EventsService } from './events.service';

/** EventsService, for every module where a fact of delivery is known (global: no import cycles with presence and routing). */
@Global()
@Module({ providers: [EventsService], exports: [EventsService] })
export class EventsModule {}
