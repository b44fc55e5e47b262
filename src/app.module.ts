import { Module } from '@nestjs/common';
import { ConditionalModule, ConfigModule, ConfigService } from '@nestjs/config';
import { join } from 'node:path';
import { ENVIRONMENT_KEYS, validateEnvironment, type Environment } from './config/environment';
import { optionsFromEnvironment } from './config/messenger-options';
import { DemoModule } from './demo/demo.module';
import { RedMessengerModule } from './redmessenger.module';

/** Where environment files are read from: `config/.env.<NODE_ENV>`, then `config/.env`; the process environment wins. */
const configDir = join(__dirname, '..', 'config');

/** The standalone server: RedMessenger configured from the environment (the only place that reads it). */
@Module({
  imports: [
    ConfigModule.forRoot({
      envFilePath: [join(configDir, `.env.${process.env.NODE_ENV ?? 'development'}`), join(configDir, '.env')],
      validate: validateEnvironment,
      cache: true,
    }),
    RedMessengerModule.forRootAsync({
      imports: [ConfigModule],
      inject: [ConfigService],
      useFactory: (config: ConfigService) => optionsFromEnvironment(Object.fromEntries(ENVIRONMENT_KEYS.map((key) => [key, config.get(key)])) as unknown as Environment),
    }),
    // Evaluated once the env files are loaded; validation has turned DEMO into "true" or "false".
    ConditionalModule.registerWhen(DemoModule, (env) => env.DEMO === 'true', { debug: false }),
  ],
})
export class AppModule {}
