import { Module, RequestMethod, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { QueueModule } from '../queue/queue.module';
import { StoreModule } from '../store/store.module';
import { InboxService } from './inbox.service';
import { PublishBodyMiddleware, PUBLISH_PATH } from './publish-body.middleware';
import { PublishController } from './publish.controller';
import { PublishService } from './publish.service';

/** The publish paths that cannot lose a message: POST /v1/messages and the inbox stream rm:inbox. */
@Module({ imports: [QueueModule, StoreModule], controllers: [PublishController], providers: [PublishService, InboxService], exports: [PublishService] })
export class PublishModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(PublishBodyMiddleware).forRoutes({ path: PUBLISH_PATH.slice(1), method: RequestMethod.POST });
  }
}
