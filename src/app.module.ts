import { Global, Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { join } from 'node:path';
import { ENVIRONMENT_KEYS, validateEnvironment, type Environment } from './config/environment';
import { MESSENGER_OPTIONS, optionsFromEnvironment } from './config/messenger-options';
import { HealthModule } from './health/health.module';
import { MessengerModule } from './messenger/messenger.module';
import { RedisModule } from './redis/redis.module';

/** Where environment files are read from: `config/.env.<NODE_ENV>`, then `config/.env`; the process environment wins. */
const configDir = join(__dirname, '..', 'config');

@Global()
@Module({
  imports: [
    ConfigModule.forRoot({
      envFilePath: [join(configDir, `.env.${process.env.NODE_ENV ?? 'development'}`), join(configDir, '.env')],
      validate: validateEnvironment,
      cache: true,
    }),
  ],
  providers: [
    {
      provide: MESSENGER_OPTIONS,
      inject: [ConfigService],
      useFactory: (config: ConfigService) =>
        optionsFromEnvironment(Object.fromEntries(ENVIRONMENT_KEYS.map((key) => [key, config.get(key)])) as unknown as Environment),
    },
  ],
  exports: [MESSENGER_OPTIONS],
})
class OptionsModule {}

@Module({
  imports: [OptionsModule, RedisModule, MessengerModule, HealthModule],
})
export class AppModule {}
