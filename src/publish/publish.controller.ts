import {
  ArgumentsHost,
  BadRequestException,
  CanActivate,
  ExecutionContext,
  Injectable,
  UseGuards,
  Body,
  Catch,
  ConflictException,
  Controller,
  Delete,
  ExceptionFilter,
  Headers,
  HttpCode,
  HttpException,
  Logger,
  NotFoundException,
  Param,
  Post,
  Query,
  Req,
  ServiceUnavailableException,
  UseFilters,
  ValidationPipe,
  type PipeTransform,
  type ValidationError,
} from '@nestjs/common';
import { ApiBearerAuth, ApiExtraModels, ApiHeader, ApiOperation, ApiParam, ApiQuery, ApiResponse, ApiTags, getSchemaPath } from '@nestjs/swagger';

/** The part of Express's response used here. */
interface Response {
  status(code: number): { json(body: unknown): void };
}
import { RateLimitedLog } from '../logging/rate-limited-log';
import { MetricsService } from '../metrics/metrics.service';
import type { HttpPublishOutcome } from '../metrics/metrics.constants';
import { ApiKeyGuard } from '../http/api-key.guard';
import { ID_PATTERN, isValidId } from '../protocol/ids';
import { PublishErrorDto, PublishMessageDto, PublishedToGroupDto, PublishedToUserDto, RetractedDto } from './publish.dto';
import { type PublishRequest } from './publish-body.middleware';
import { ReplicasBehind } from '../queue/queue.service';
import { PublishService } from './publish.service';
import { charCount, ID_RULE, type Publication } from './publication';

/** A request waits at most this long for Redis; then 503, never a hang. */
const DEADLINE_MS = 5000;

const CODES: Record<number, string> = { 400: 'BAD_REQUEST', 401: 'UNAUTHORIZED', 404: 'NOT_FOUND', 409: 'CONFLICT', 413: 'PAYLOAD_TOO_LARGE', 503: 'UNAVAILABLE' };
const OUTCOMES: Record<number, HttpPublishOutcome> = { 400: 'bad_request', 401: 'unauthorized', 409: 'conflict', 413: 'too_large', 503: 'unavailable' };

/** A DELETE's message is not waiting for the user (acked, retracted already, never stored): a 404 in this route's format. */
class NotRetractable extends NotFoundException {}

/** Errors of these routes as `{"error": {"code", "message"}}`; a 404 for the route being off looks like any unknown route's. */
@Catch(HttpException)
class PublishErrorFilter implements ExceptionFilter {
  constructor(private readonly metrics: MetricsService) {}

  catch(exception: HttpException, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    const status = exception.getStatus();
    if (status === 404 && !(exception instanceof NotRetractable)) {
      response.status(404).json(exception.getResponse());
      return;
    }
    const body = exception.getResponse();
    const message = typeof body === 'string' ? body : String((body as { message?: unknown }).message ?? exception.message);
    if (host.switchToHttp().getRequest<PublishRequest>().method === 'POST') this.metrics.httpPublished(OUTCOMES[status] ?? 'bad_request');
    response.status(status).json({ error: { code: CODES[status] ?? 'BAD_REQUEST', message } });
  }
}

/** Off (404) while PUBLISH_API_KEYS is empty, else a Bearer key of it (401). */
const PublishKeyGuard = ApiKeyGuard({ name: 'PUBLISH_API_KEYS (publishApiKeys)', keys: (options) => options.publishApiKeys, unauthorized: 'send Authorization: Bearer <one of PUBLISH_API_KEYS>' });

/** After the key (PublishBodyMiddleware checked it before it read the body), the body's problem if any. */
@Injectable()
class BodyErrorGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const error = context.switchToHttp().getRequest<PublishRequest>().publishBodyError;
    if (error) throw error;
    return true;
  }
}

/** Validates the body with class-validator; the first problem found is the message. */
class BodyPipe implements PipeTransform {
  private readonly validation = new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    stopAtFirstError: true,
    exceptionFactory: (errors: ValidationError[]) => new BadRequestException(firstProblem(errors)),
  });

  transform(value: unknown) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new BadRequestException('the body must be a JSON object (Content-Type: application/json)');
    }
    return this.validation.transform(value, { type: 'body', metatype: PublishMessageDto });
  }
}

const firstProblem = (errors: ValidationError[]): string => {
  const error = errors[0];
  // whitelist: "property foo should not exist", named as the field it is.
  if (error.constraints?.whitelistValidation) return `unknown field ${JSON.stringify(error.property)} (fields: to, group, payload, ttl, collapseKey)`;
  return Object.values(error.constraints ?? {})[0] ?? `${error.property} is not valid`;
};

/** Members retracted for at once (one script call each) when a group message is retracted. */
const RETRACT_BATCH = 100;

/**
 * POST /v1/messages: a message stored (owed or queued) before it is answered 202,
 * for producers that need to know; DELETE /v1/messages/<id> takes one back.
 * Off (404) until PUBLISH_API_KEYS is set.
 */
@ApiTags('publish')
@ApiBearerAuth()
@ApiExtraModels(PublishedToUserDto, PublishedToGroupDto, RetractedDto)
@Controller('v1/messages')
@UseFilters(PublishErrorFilter)
@UseGuards(PublishKeyGuard, BodyErrorGuard)
export class PublishController {
  private readonly logger = new Logger('PublishController');
  /** One line per request would be thousands a second from a busy producer while Redis is away: at most one a second per kind. */
  private readonly warnings = new RateLimitedLog(this.logger);

  constructor(
    private readonly publish: PublishService,
    private readonly metrics: MetricsService,
  ) {}

  @Post()
  @HttpCode(202)
  @ApiOperation({ summary: 'Store a message for a user or a group; answered once it is stored in Redis (owed or queued)' })
  @ApiHeader({ name: 'Idempotency-Key', required: false, description: '1 to 128 characters: a repeat within 24 h with the same body stores nothing new and gets the first answer; with another body, 409.' })
  @ApiResponse({
    status: 202,
    description: 'Stored: `{"id"}` for `to`, `{"id", "recipients"}` for `group` (one id for every member).',
    schema: { oneOf: [{ $ref: getSchemaPath(PublishedToUserDto) }, { $ref: getSchemaPath(PublishedToGroupDto) }] },
  })
  @ApiResponse({ status: 400, description: 'The body (or the Idempotency-Key) is not valid; the message names the field.', type: PublishErrorDto })
  @ApiResponse({ status: 401, description: 'No or wrong `Authorization: Bearer <key>`.', type: PublishErrorDto })
  @ApiResponse({ status: 404, description: 'PUBLISH_API_KEYS is not set: the route is off.' })
  @ApiResponse({ status: 409, description: 'The Idempotency-Key was used in the last 24 h with another body; nothing stored.', type: PublishErrorDto })
  @ApiResponse({ status: 413, description: 'The body is larger than MAX_PUBLISH_BYTES.', type: PublishErrorDto })
  @ApiResponse({ status: 503, description: 'Redis could not store it in time; retry (with an Idempotency-Key, a retry never stores it twice).', type: PublishErrorDto })
  async send(@Req() request: PublishRequest, @Body(new BodyPipe()) body: PublishMessageDto, @Headers('idempotency-key') idempotencyKey?: string): Promise<PublishedToUserDto | PublishedToGroupDto> {
    const apiKey = request.apiKey!;
    if (body.to !== undefined && body.group !== undefined) throw new BadRequestException('give exactly one of to and group, not both');
    if (idempotencyKey !== undefined && (idempotencyKey.length === 0 || charCount(idempotencyKey) > 128)) {
      throw new BadRequestException('the Idempotency-Key header must be 1 to 128 characters');
    }
    const publication: Publication = { to: body.to, group: body.group, payload: body.payload, ttl: body.ttl, collapseKey: body.collapseKey };
    const { answer, outcome } = await this.withDeadline(this.accept(publication, apiKey, idempotencyKey));
    this.metrics.httpPublished(outcome);
    return answer;
  }

  private async accept(publication: Publication, apiKey: string, idempotencyKey?: string): Promise<{ answer: PublishedToUserDto | PublishedToGroupDto; outcome: HttpPublishOutcome }> {
    let id = this.publish.newId();
    const idempotency = idempotencyKey === undefined ? undefined : PublishService.idempotency(apiKey, idempotencyKey, publication, id);
    const target = publication.to !== undefined ? `user ${publication.to}` : `group ${publication.group}`;
    if (idempotency) {
      const seen = await this.unavailableOnError(this.publish.recorded(idempotency));
      if (seen && !seen.same) throw this.conflict(target);
      if (seen && !seen.pending) return { answer: seen.answer as unknown as PublishedToUserDto, outcome: 'duplicate' };
      // A group's members are stored in several calls: its id is reserved first, so a retry after
      // a partial failure (or a crash) stores the rest under the same id.
      if (publication.group !== undefined) {
        const reserved = await this.unavailableOnError(this.publish.reserve(idempotency));
        if (reserved === undefined) throw this.conflict(target);
        id = idempotency.answer = reserved;
      }
    }
    const [result] = await this.unavailableOnError(this.publish.storeAll([{ publication, id, ts: Date.now(), idempotency }]));
    if (result.failed instanceof ReplicasBehind) {
      this.logger.warn(`POST /v1/messages for ${target}: ${result.failed.message}; answered 503`);
      throw new ServiceUnavailableException(`the message is stored but not yet on enough replicas (PUBLISH_WAIT_REPLICAS); retry with the same Idempotency-Key: it is not stored twice`);
    }
    if (result.failed) {
      this.warnings.warn('not stored', `POST /v1/messages for ${target}: Redis did not store it (${result.failed.message}); answered 503`);
      throw new ServiceUnavailableException(
        publication.group !== undefined && result.recipients > 0
          ? `Redis could not store the message for every member (${result.recipients} have it); retry with the same Idempotency-Key to store it for the rest only`
          : 'Redis could not store the message; nothing was stored, retry',
      );
    }
    if (result.conflicts > 0) throw this.conflict(target);
    if (publication.to !== undefined && result.refused > 0) {
      throw new ServiceUnavailableException(`the queue of ${publication.to} is full (MAX_QUEUE_LENGTH, QUEUE_OVERFLOW=reject): not stored`);
    }
    const answer = publication.to !== undefined ? { id: result.answer ?? id } : { id: result.answer ?? id, recipients: result.recipients };
    if (idempotency) await this.publish.record(idempotency, answer).catch(() => undefined); // the per-user records still hold
    const repeated = publication.to !== undefined ? result.repeated > 0 : result.recipients > 0 && result.stored === 0;
    this.logger.debug(`POST /v1/messages: stored for ${target}${publication.group !== undefined ? ` (${result.recipients} members)` : ''}`);
    return { answer, outcome: repeated ? 'duplicate' : 'accepted' };
  }

  @Delete(':id')
  @HttpCode(200)
  @ApiOperation({ summary: 'Retract a message: removed from the queue, or no longer owed (the sockets that were sent it get a `retract` frame); never delivered afterwards' })
  @ApiParam({ name: 'id', description: 'The message id (the `id` of the 202 of POST /v1/messages, of the `message` frame and of the events).' })
  @ApiQuery({ name: 'to', required: false, description: 'The user the message was stored for (exactly one of `to` and `group`).', schema: { type: 'string', pattern: ID_PATTERN.source } })
  @ApiQuery({ name: 'group', required: false, description: 'A group: the message is retracted for each member now in its set.', schema: { type: 'string', pattern: ID_PATTERN.source } })
  @ApiResponse({ status: 200, description: '`{"retracted": "queued"}` or `{"retracted": "sent"}` for `to`; `{"retracted": <members>}` for `group`.', type: RetractedDto })
  @ApiResponse({ status: 400, description: 'Not exactly one of `to` and `group`, or not a valid id.', type: PublishErrorDto })
  @ApiResponse({ status: 401, description: 'No or wrong `Authorization: Bearer <key>`.', type: PublishErrorDto })
  @ApiResponse({
    status: 404,
    description: 'Acked already, retracted already, or never stored for the user (for a group: for no member now in it); or PUBLISH_API_KEYS is not set: the route is off.',
    type: PublishErrorDto,
  })
  @ApiResponse({ status: 503, description: 'Redis did not answer in time; retry (a retract that happened answers 404 the second time).', type: PublishErrorDto })
  async retract(@Param('id') id: string, @Query('to') to?: unknown, @Query('group') group?: unknown): Promise<RetractedDto> {
    if ((to === undefined) === (group === undefined)) throw new BadRequestException('give exactly one of to and group');
    if (to !== undefined && !isValidId(to)) throw new BadRequestException(`to ${ID_RULE}`);
    if (group !== undefined && !isValidId(group)) throw new BadRequestException(`group ${ID_RULE}`);
    const target = to !== undefined ? `user ${to as string}` : `group ${group as string}`;
    // Message ids are ids as well: anything else was never stored (and never reaches a script).
    if (!isValidId(id)) throw new NotRetractable(`message ${JSON.stringify(id)} is not waiting for ${target}`);
    const retracting: Promise<'queued' | 'sent' | number | undefined> = to !== undefined ? this.publish.retract(to as string, id) : this.retractForGroup(group as string, id);
    const retracted = await this.withDeadline(this.unavailableOnError(retracting, 'Redis failed while retracting the message; retry'));
    if (retracted === undefined || retracted === 0) throw new NotRetractable(`message ${id} is not waiting for ${target} (acked, retracted already, or never stored for it)`);
    this.logger.debug(`DELETE /v1/messages/${id}: retracted for ${target} (${retracted})`);
    return { retracted };
  }

  /** Retracted for each member now in the group; answers for how many. */
  private async retractForGroup(cid: string, id: string): Promise<number> {
    const [members] = await this.publish.members([cid]);
    let count = 0;
    for (let i = 0; i < members.length; i += RETRACT_BATCH) {
      const outcomes = await Promise.all(members.slice(i, i + RETRACT_BATCH).map((user) => this.publish.retract(user, id)));
      count += outcomes.filter((outcome) => outcome !== undefined).length;
    }
    return count;
  }

  private conflict(target: string): ConflictException {
    this.warnings.warn('conflict', `POST /v1/messages for ${target}: Idempotency-Key reused with another body; answered 409`);
    return new ConflictException('this Idempotency-Key was used in the last 24 hours with another body; nothing stored');
  }

  private async unavailableOnError<T>(call: Promise<T>, answer = 'Redis could not store the message; nothing was stored, retry'): Promise<T> {
    try {
      return await call;
    } catch (error) {
      this.warnings.warn('redis failed', `/v1/messages: Redis failed (${(error as Error).message}); answered 503`);
      throw new ServiceUnavailableException(answer);
    }
  }

  private withDeadline<T>(call: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.warnings.warn('deadline', `/v1/messages: Redis did not answer within ${DEADLINE_MS} ms; answered 503`);
        reject(new ServiceUnavailableException(`Redis did not answer within ${DEADLINE_MS} ms; the message may or may not be stored: retry with an Idempotency-Key`));
      }, DEADLINE_MS);
    });
    call.catch(() => undefined); // answered by the deadline: a late failure has no one to tell
    return Promise.race([call, deadline]).finally(() => clearTimeout(timer));
  }
}
