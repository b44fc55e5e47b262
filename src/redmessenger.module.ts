import { Module } from '@nestjs/common';
import { MESSENGER_OPTIONS, withDefaults } from './config/messenger-options';
import { AdminModule } from './admin/admin.module';
import { EventsModule } from './events/events.module';
import { HealthModule } from './health/health.module';
import { MessengerModule } from './messenger/messenger.module';
import { MetricsModule } from './metrics/metrics.module';
import { PublishModule } from './publish/publish.module';
import { RedisModule } from './redis/redis.module';
import { SweepsModule } from './sweeps/sweeps.module';
import { ConfigurableRedMessengerModule, REDMESSENGER_MODULE_OPTIONS, type RedMessengerModuleOptions } from './redmessenger.module-definition';

/**
 * RedMessenger as one importable module:
 *
 *     RedMessengerModule.forRoot({ redisUrl: 'redis://…', maxInflight: 500 })
 *     RedMessengerModule.forRootAsync({ inject: [ConfigService], useFactory: (c) => ({ … }) })
 *
 * with `tokenVerifier: MyVerifier` to check tokens your own way, `listener: MyListener`
 * for delivery hooks (DeliveryListener), and `redis: client`
 * to run on a client you already own. The host application installs the WebSocket
 * adapter with `useRedMessengerAdapter(app)`.
 */
@Module({
  imports: [RedisModule, EventsModule, MessengerModule, HealthModule, MetricsModule, PublishModule, SweepsModule, AdminModule],
  providers: [
    {
      provide: MESSENGER_OPTIONS,
      inject: [REDMESSENGER_MODULE_OPTIONS],
      useFactory: (given: RedMessengerModuleOptions) => withDefaults(given),
    },
  ],
  exports: [MESSENGER_OPTIONS],
})
export class RedMessengerModule extends ConfigurableRedMessengerModule {}
