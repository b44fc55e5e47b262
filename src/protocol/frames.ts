import { isUtf8 } from 'node:buffer';
import { ArrayMaxSize, IsArray, IsBoolean, IsString, Matches, ValidateIf } from 'class-validator';
import { ID_PATTERN } from './ids';
import { CloseCode, ErrorCode, FrameError } from './frame-error';

export class IdentifyDto {
  @IsString()
  @Matches(ID_PATTERN)
  id: string;

  // Absent is fine; present and not a string (null included) is an invalid frame. Its only
  // size limit is the frame's (MAX_FRAME_BYTES): the verifier decides whether it is right.
  @ValidateIf((dto: IdentifyDto) => dto.token !== undefined)
  @IsString()
  token?: string;
}

export const MAX_ACK_IDS = 10000;

export class AckDto {
  @IsArray()
  @ArrayMaxSize(MAX_ACK_IDS)
  @IsString({ each: true })
  ids: string[];
}

export class VisibilityDto {
  @IsBoolean()
  visible: boolean;
}

export class RefreshDto {
  @IsString()
  token: string;
}

/** A frame of the `{"event": string, "data": object}` shape. */
export interface Frame {
  event: string;
  data: Record<string, unknown>;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** What a refused value is, for refusal messages: "missing", "null", "an array", "a number"... */
export function kind(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** Parses one WebSocket frame; anything but UTF-8 JSON text of the frame shape is refused. */
export function parseFrame(raw: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): Frame {
  const buffer = Buffer.isBuffer(raw) ? raw : Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw);
  if (isBinary) throw FrameError.badFrame('Binary frames are not accepted; send JSON text');
  if (!isUtf8(buffer)) throw FrameError.badFrame('Frame is not valid UTF-8');
  let frame: unknown;
  try {
    frame = JSON.parse(buffer.toString('utf8'));
  } catch {
    throw FrameError.badFrame('Frame is not JSON');
  }
  if (!isObject(frame)) throw FrameError.badFrame(`Frame must be a JSON object {"event": string, "data": object}, not ${kind(frame)}`);
  if (typeof frame.event !== 'string') throw FrameError.badFrame(`Frame "event" must be a string, not ${kind(frame.event)}`);
  if (!isObject(frame.data)) throw FrameError.badFrame(`Frame "data" must be an object, not ${kind(frame.data)}`);
  return { event: frame.event, data: frame.data };
}

// Only the known fields are read: whatever else a frame carries is ignored, however it is shaped. As with acks, the
// DTO's rule is checked directly (a class-transformer and class-validator pass is most of an identify's parsing in a
// reconnect storm); the DTO stays the spec (frames.spec.ts holds both to the same answers).
export function toIdentify(data: Record<string, unknown>): IdentifyDto {
  const { id, token } = data;
  if (typeof id !== 'string') {
    throw new FrameError(ErrorCode.InvalidId, `identify "id" must be a string, not ${kind(id)}`, CloseCode.BadFrame);
  }
  if (!ID_PATTERN.test(id)) {
    throw new FrameError(ErrorCode.InvalidId, 'identify "id" must match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$', CloseCode.BadFrame);
  }
  if (token === undefined) return { id };
  if (typeof token !== 'string') throw FrameError.badFrame(`identify "token" must be a string when present, not ${kind(token)}`);
  return { id, token };
}

export function toAck(data: Record<string, unknown>): AckDto {
  // Acks are the hot path (one frame per few messages): the DTO's rule, checked directly,
  // costs a fraction of a class-validator pass (about 35 µs for 50 ids); the DTO stays the spec.
  const { ids } = data;
  if (!Array.isArray(ids)) throw new FrameError(ErrorCode.BadAck, `ack "ids" must be an array of strings, not ${kind(ids)}`);
  if (ids.length > MAX_ACK_IDS) throw new FrameError(ErrorCode.BadAck, `ack "ids" holds ${ids.length} ids; at most ${MAX_ACK_IDS} per frame`);
  const bad = ids.findIndex((id) => typeof id !== 'string');
  if (bad >= 0) throw new FrameError(ErrorCode.BadAck, `ack "ids"[${bad}] must be a string, not ${kind(ids[bad])}`);
  return { ids };
}

// A refresh without a string token is an invalid frame (4400), as identify's token rule says.
export function toRefresh(data: Record<string, unknown>): RefreshDto {
  if (typeof data.token !== 'string') throw FrameError.badFrame(`refresh "token" must be a string, not ${kind(data.token)}`);
  return { token: data.token };
}

// A bad visibility frame is answered and changes nothing; the socket stays open.
export function toVisibility(data: Record<string, unknown>): VisibilityDto {
  if (typeof data.visible !== 'boolean') throw new FrameError(ErrorCode.BadVisibility, `visibility "visible" must be a boolean, not ${kind(data.visible)}`);
  return { visible: data.visible };
}
