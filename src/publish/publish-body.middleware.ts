import { BadRequestException, HttpException, Injectable, PayloadTooLargeException, type NestMiddleware } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';

export const PUBLISH_PATH = '/v1/messages';

/** A request with what this middleware found: the parsed body, or why there is none (thrown after the key check). */
export type PublishRequest = IncomingMessage & { body?: unknown; _body?: boolean; publishBodyError?: HttpException; publishApiKey?: string };

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** True for requests to POST /v1/messages, which reads its own body (the app's JSON parser skips them). */
export const isPublishRequest = (req: IncomingMessage): boolean => req.method === 'POST' && (req.url ?? '').split('?')[0].replace(/\/+$/, '') === PUBLISH_PATH;

/**
 * Reads the body of POST /v1/messages up to MAX_PUBLISH_BYTES and parses it as JSON.
 * A problem is not answered here but kept for the route (PublishRequest.publishBodyError),
 * which answers 404 (off) and 401 (no key) first, and in its own error format.
 * A body a host application's parser already read is taken as it is.
 */
@Injectable()
export class PublishBodyMiddleware implements NestMiddleware {
  constructor(@InjectMessengerOptions() private readonly options: MessengerOptions) {}

  use(req: PublishRequest, _res: unknown, next: () => void): void {
    const limit = this.options.maxPublishBytes;
    const tooLarge = () => new PayloadTooLargeException(`the body is larger than MAX_PUBLISH_BYTES (${limit} bytes)`);
    if (req._body) {
      if (!JSON_TYPE.test(req.headers['content-type'] ?? '')) req.publishBodyError = new BadRequestException('the body must be JSON (Content-Type: application/json)');
      return next();
    }
    if (this.options.publishApiKeys.length === 0) return next(); // off: answered 404 unread
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      req.publishBodyError = tooLarge();
      req.resume(); // discarded; the answer does not wait for it
      return next();
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (size > limit) req.publishBodyError = tooLarge();
      else {
        try {
          req.body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch (error) {
          req.publishBodyError = new BadRequestException(`the body is not valid JSON (${(error as Error).message})`);
        }
      }
      req._body = true;
      next();
    });
  }
}
