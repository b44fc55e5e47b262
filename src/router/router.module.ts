import { Module } from '@nestjs/common';
import { QueueModule } from '../queue/queue.module';
import { StoreModule } from '../store/store.module';
import { RouterService } from './router.service';
import { ShardsService } from './shards.service';

@Module({ imports: [QueueModule, StoreModule], providers: [RouterService, ShardsService], exports: [RouterService, ShardsService] })
export class RouterModule {}
