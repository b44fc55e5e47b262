import { BadRequestException, HttpException, Injectable, PayloadTooLargeException, type NestMiddleware } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { BearerKeys } from '../http/bearer-keys';
import type { KeyedRequest } from '../http/api-key.guard';

export const PUBLISH_PATH = '/v1/messages';

/**
 * A request with what this middleware found: the parsed body, or why there is none (thrown by
 * the route's guard, after the key check; the key guard leaves the key in `apiKey`).
 */
export type PublishRequest = KeyedRequest & { body?: unknown; _body?: boolean; publishBodyError?: HttpException };

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** True for requests to POST /v1/messages, which reads its own body (the app's JSON parser skips them). */
export const isPublishRequest = (req: IncomingMessage): boolean => req.method === 'POST' && (req.url ?? '').split('?')[0].replace(/\/+$/, '') === PUBLISH_PATH;

/**
 * Checks the key of POST /v1/messages, then reads its body up to MAX_PUBLISH_BYTES and parses
 * it as JSON. Without a valid key the body is never read; past the limit (by Content-Length,
 * or once a chunked body passes it) the rest is not read. Either way the connection is closed
 * once the answer is sent, so a client cannot make the server take in a body it refused.
 * Problems are answered by the route (404 off, 401 no key, then the body's), in its format.
 * A body a host application's parser already read is taken as it is.
 */
@Injectable()
export class PublishBodyMiddleware implements NestMiddleware {
  private readonly keys: BearerKeys;

  constructor(@InjectMessengerOptions() private readonly options: MessengerOptions) {
    this.keys = new BearerKeys(options.publishApiKeys);
  }

  use(req: PublishRequest, res: ServerResponse, next: () => void): void {
    if (this.keys.none) return next(); // off: answered 404 unread
    if (this.keys.match(req.headers.authorization) === undefined) return leaveUnread(req, res, next); // 401
    if (req._body) {
      if (!JSON_TYPE.test(req.headers['content-type'] ?? '')) req.publishBodyError = new BadRequestException('the body must be JSON (Content-Type: application/json)');
      return next();
    }
    const limit = this.options.maxPublishBytes;
    const tooLarge = () => new PayloadTooLargeException(`the body is larger than MAX_PUBLISH_BYTES (${limit} bytes)`);
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      req.publishBodyError = tooLarge();
      return leaveUnread(req, res, next);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      req.off('data', onData).off('end', onEnd).pause();
      req.publishBodyError = tooLarge();
      leaveUnread(req, res, next);
    };
    const onEnd = () => {
      try {
        req.body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (error) {
        req.publishBodyError = new BadRequestException(`the body is not valid JSON (${(error as Error).message})`);
      }
      req._body = true;
      next();
    };
    req
      .on('data', onData)
      .on('end', onEnd)
      .on('error', () => undefined);
  }
}

/** The answer goes out with `Connection: close` and the socket is destroyed once it is sent: the rest of the body is never read. */
function leaveUnread(req: IncomingMessage, res: ServerResponse, next: () => void): void {
  if (!req.complete) {
    res.setHeader('Connection', 'close');
    res.once('finish', () => req.socket.destroy());
  }
  next();
}
