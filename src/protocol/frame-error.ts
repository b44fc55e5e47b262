/** Close codes of the wire contract. */
export enum CloseCode {
  ShuttingDown = 1001,
  TooBig = 1009,
  TryAgainLater = 1013,
  BadFrame = 4400,
  Unauthorized = 4401,
  IdentifyTimeout = 4408,
  Replaced = 4409,
  TooManyAttempts = 4429,
  /** A slow consumer that did not drain in time (RFC 6455 policy violation). */
  PolicyViolation = 1008,
}

/** The `code` of an `error` frame. */
export enum ErrorCode {
  BadFrame = 'BAD_FRAME',
  InvalidId = 'INVALID_ID',
  NotIdentified = 'NOT_IDENTIFIED',
  AlreadyIdentified = 'ALREADY_IDENTIFIED',
  UnknownEvent = 'UNKNOWN_EVENT',
  BadAck = 'BAD_ACK',
  BadVisibility = 'BAD_VISIBILITY',
  Unauthorized = 'UNAUTHORIZED',
  IdentifyTimeout = 'IDENTIFY_TIMEOUT',
  Unavailable = 'UNAVAILABLE',
  Replaced = 'REPLACED',
  TooManyAttempts = 'TOO_MANY_ATTEMPTS',
  SlowConsumer = 'SLOW_CONSUMER',
  RateLimited = 'RATE_LIMITED',
  ServerFull = 'SERVER_FULL',
  /** The socket's JWT reached its `exp` without a refresh (close 4401). */
  TokenExpired = 'TOKEN_EXPIRED',
}

/**
 * A frame the server refuses. `close` is the close code that follows the
 * `error` frame, or undefined when the socket stays open.
 */
export class FrameError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly close?: CloseCode,
  ) {
    super(message);
    this.name = this.constructor.name;
  }

  /** The same refusal, fatal: before `ready` every bad frame closes the socket. */
  fatal(): FrameError {
    return this.close ? this : new FrameError(this.code, this.message, CloseCode.BadFrame);
  }

  static badFrame(message: string): FrameError {
    return new FrameError(ErrorCode.BadFrame, message, CloseCode.BadFrame);
  }

  static unauthorized(): FrameError {
    return new FrameError(ErrorCode.Unauthorized, 'Identify refused: the token does not prove this id', CloseCode.Unauthorized);
  }
}
