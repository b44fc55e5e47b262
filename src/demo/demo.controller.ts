import { Body, Controller, Delete, Get, Header, HttpCode, NotFoundException, Param, Post, Query, ServiceUnavailableException, ValidationPipe } from '@nestjs/common';
import { IsString, Matches, MaxLength } from 'class-validator';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { PublishService } from '../publish/publish.service';
import { ID_PATTERN, USER_CHANNEL_PREFIX, isValidId } from '../redis/keys';

export class SendMessageDto {
  @IsString({ message: 'to must be a string' })
  @Matches(ID_PATTERN, { message: 'to must be a user id: 1 to 128 of A-Z a-z 0-9 . _ @ -, starting with a letter or a digit' })
  to: string;

  @IsString({ message: 'payload must be a string' })
  @MaxLength(65536, { message: 'payload must be at most 65536 characters' })
  payload: string;
}

export class RetractQueryDto {
  @IsString({ message: 'to must be a string' })
  @Matches(ID_PATTERN, { message: 'to must be a user id: 1 to 128 of A-Z a-z 0-9 . _ @ -, starting with a letter or a digit' })
  to: string;
}

const PUBLIC = join(__dirname, 'public');
const NO_CACHE = 'no-store';

/** The page, its script and style, the SDK's ESM build (read once, on first request), and its send and take-back routes. */
@Controller('demo')
export class DemoController {
  private readonly files = new Map<string, string>();

  constructor(
    private readonly publisher: PublishService,
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

  /**
   * Demo only: anyone may send to anyone. Stored as POST /v1/messages stores (without its
   * key): answered once stored, with the message's id, which the page's "take back" needs.
   */
  @Post('messages')
  @HttpCode(202)
  async send(@Body(new ValidationPipe({ forbidUnknownValues: true })) body: SendMessageDto): Promise<{ channel: string; id: string }> {
    const id = this.publisher.newId();
    const [result] = await this.publisher.storeAll([{ publication: { to: body.to, payload: body.payload }, id, ts: Date.now() }]);
    if (result.failed) throw new ServiceUnavailableException(`Redis did not store the message (${result.failed.message}); retry`);
    if (result.refused > 0) throw new ServiceUnavailableException(`the queue of ${body.to} is full: not stored`);
    return { channel: `${USER_CHANNEL_PREFIX}${body.to}`, id: result.answer ?? id };
  }

  /**
   * Demo only, as the send route: takes a message back for a user, as DELETE /v1/messages/<id>?to=<user>
   * does (without its key). 404 once it is acked: a message read cannot be taken back.
   */
  @Delete('messages/:id')
  @HttpCode(200)
  async retract(@Param('id') id: string, @Query(new ValidationPipe({ forbidUnknownValues: true })) query: RetractQueryDto): Promise<{ retracted: 'queued' | 'sent' }> {
    const retracted = isValidId(id) ? await this.publisher.retract(query.to, id) : undefined;
    if (retracted === undefined) throw new NotFoundException(`message ${id} is not waiting for ${query.to} (read already, taken back already, or never sent to them)`);
    return { retracted };
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
