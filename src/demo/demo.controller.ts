import { Body, Controller, Get, Header, HttpCode, Inject, Post, ServiceUnavailableException, ValidationPipe } from '@nestjs/common';
import { IsString, Matches, MaxLength } from 'class-validator';
import type { Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { ID_PATTERN, USER_CHANNEL_PREFIX } from '../queue/queue-keys';
import { REDIS_CLIENT } from '../redis/redis.constants';

export class SendMessageDto {
  @IsString({ message: 'to must be a string' })
  @Matches(ID_PATTERN, { message: 'to must be a user id: 1 to 128 of A-Z a-z 0-9 . _ @ -, starting with a letter or a digit' })
  to: string;

  @IsString({ message: 'payload must be a string' })
  @MaxLength(65536, { message: 'payload must be at most 65536 characters' })
  payload: string;
}

const PUBLIC = join(__dirname, 'public');
const NO_CACHE = 'no-store';

/** The page, its script and style, and the SDK's ESM build; read once, on first request. */
@Controller('demo')
export class DemoController {
  private readonly files = new Map<string, string>();

  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
  ) {}

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', NO_CACHE)
  page(): string {
    // The page needs the WebSocket path, which is a setting.
    return this.read('index.html', join(PUBLIC, 'index.html')).replace('__WS_PATH__', escapeHtml(this.options.wsPath));
  }

  @Get('demo.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header('Cache-Control', NO_CACHE)
  script(): string {
    return this.read('demo.js', join(PUBLIC, 'demo.js'));
  }

  @Get('demo.css')
  @Header('Content-Type', 'text/css; charset=utf-8')
  @Header('Cache-Control', NO_CACHE)
  style(): string {
    return this.read('demo.css', join(PUBLIC, 'demo.css'));
  }

  /** The SDK as an ES module, from the workspace package's build (client/dist/index.js). */
  @Get('client.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header('Cache-Control', NO_CACHE)
  client(): string {
    try {
      return this.read('client.js', require.resolve('@redmessenger/client'));
    } catch {
      throw new ServiceUnavailableException('The client SDK is not built: run `npm run build`');
    }
  }

  /** Demo only: anyone may send to anyone. */
  @Post('messages')
  @HttpCode(202)
  async send(@Body(new ValidationPipe({ forbidUnknownValues: true })) body: SendMessageDto): Promise<{ channel: string }> {
    return { channel: await this.publish(body.to, body.payload) };
  }

  /** The one place the demo sends: a plain PUBLISH, as any app would (POST /v1/messages can replace it). */
  private async publish(to: string, payload: string): Promise<string> {
    const channel = `${USER_CHANNEL_PREFIX}${to}`;
    await this.redis.publish(channel, payload);
    return channel;
  }

  private read(name: string, file: string): string {
    let text = this.files.get(name);
    if (text === undefined) {
      text = readFileSync(file, 'utf8');
      this.files.set(name, text);
    }
    return text;
  }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
