import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsDefined, IsInt, IsString, Matches, Max, Min, ValidateIf, Validate, type ValidatorConstraintInterface, ValidatorConstraint } from 'class-validator';
import { ID_PATTERN } from '../protocol/ids';
import { COLLAPSE_RULE, ID_RULE, MAX_COLLAPSE_KEY_CHARS, MAX_TTL_SECONDS, TTL_RULE, validCollapseKey } from './publication';

@ValidatorConstraint({ name: 'collapseKey' })
class CollapseKeyRule implements ValidatorConstraintInterface {
  validate = (value: unknown) => validCollapseKey(value);
  defaultMessage = () => `collapseKey ${COLLAPSE_RULE}`;
}

/** The body of POST /v1/messages. Unknown fields are refused (a mistyped option must not pass silently). */
export class PublishMessageDto {
  @ApiPropertyOptional({ description: 'The recipient user id (exactly one of `to` and `group`).', example: 'user1', pattern: ID_PATTERN.source })
  @ValidateIf((body: PublishMessageDto) => body.to !== undefined || body.group === undefined)
  @IsDefined({ message: 'to or group is required' })
  @IsString({ message: `to ${ID_RULE}` })
  @Matches(ID_PATTERN, { message: `to ${ID_RULE}` })
  to?: string;

  @ApiPropertyOptional({ description: 'A group id: the message goes to every member of `rm:channels:<group>:subscribers`.', example: 'cats', pattern: ID_PATTERN.source })
  @ValidateIf((body: PublishMessageDto) => body.group !== undefined)
  @IsString({ message: `group ${ID_RULE}` })
  @Matches(ID_PATTERN, { message: `group ${ID_RULE}` })
  group?: string;

  @ApiProperty({ description: 'Delivered as the `payload` of the `message` frame, as given.', example: 'Hello, world!' })
  @IsDefined({ message: 'payload is required' })
  @IsString({ message: 'payload must be a string' })
  payload!: string;

  @ApiPropertyOptional({
    description: 'Seconds the message may wait before it is first sent to a socket; then it is dropped and counted in `ready.dropped`.',
    minimum: 1,
    maximum: MAX_TTL_SECONDS,
    example: 3600,
  })
  @ValidateIf((body: PublishMessageDto) => body.ttl !== undefined)
  @IsInt({ message: TTL_RULE })
  @Min(1, { message: TTL_RULE })
  @Max(MAX_TTL_SECONDS, { message: TTL_RULE })
  ttl?: number;

  @ApiPropertyOptional({ description: 'A newer message with the same key replaces this one while it waits in the queue, never sent.', minLength: 1, maxLength: MAX_COLLAPSE_KEY_CHARS, example: 'score' })
  @ValidateIf((body: PublishMessageDto) => body.collapseKey !== undefined)
  @Validate(CollapseKeyRule)
  collapseKey?: string;
}

export class PublishedToUserDto {
  @ApiProperty({ description: 'The message id (the `id` of the `message` frame).', example: 'k2x9f0a1.1' })
  id!: string;
}

export class PublishedToGroupDto {
  @ApiProperty({ description: "The message id, the same for every member (the `id` of each member's `message` frame).", example: 'k2x9f0a1.2' })
  id!: string;

  @ApiProperty({ description: 'How many members the message was stored for.', example: 3 })
  recipients!: number;
}

export class RetractedDto {
  @ApiProperty({
    description: 'For `to`: `queued` (removed before it was sent) or `sent` (no longer owed; the sockets sent it got a `retract` frame). For `group`: how many members it was retracted for.',
    oneOf: [
      { type: 'string', enum: ['queued', 'sent'] },
      { type: 'integer', minimum: 1 },
    ],
    example: 'queued',
  })
  retracted!: 'queued' | 'sent' | number;
}

export class PublishErrorDetail {
  @ApiProperty({ enum: ['BAD_REQUEST', 'UNAUTHORIZED', 'NOT_FOUND', 'PAYLOAD_TOO_LARGE', 'CONFLICT', 'UNAVAILABLE'] })
  code!: string;
  @ApiProperty({ description: 'What is wrong (names the field for a 400).' })
  message!: string;
}

export class PublishErrorDto {
  @ApiProperty({ type: PublishErrorDetail })
  error!: PublishErrorDetail;
}
