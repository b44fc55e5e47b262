import type { LoggerService, LogLevel } from '@nestjs/common';

/** The `level` written for each Nest log level. */
const LEVEL_NAMES: Record<LogLevel, string> = {
  verbose: 'verbose',
  debug: 'debug',
  log: 'info',
  warn: 'warn',
  error: 'error',
  fatal: 'fatal',
};

/** Severity, least severe first (as Nest orders them). */
const SEVERITY: Record<LogLevel, number> = { verbose: 0, debug: 1, log: 2, warn: 3, error: 4, fatal: 5 };

/** Keys every line has; fields of a logged object never overwrite them. */
const RESERVED = new Set(['time', 'level', 'context', 'msg']);

/** Nest's test for "this string is a stack trace" (ConsoleLogger.isStackFormat). */
const STACK_RE = /^(.)+\n\s+at .+:\d+:\d+/;

export interface JsonLoggerOptions {
  /** Levels written (default: error, warn, log). `fatal` is written whenever `error` is. */
  logLevels?: LogLevel[];
  /** Context of lines that name none (a plain `Logger.log('x')`). */
  context?: string;
  /** Where lines go (default: process.stdout). */
  write?: (line: string) => void;
  /** The clock (default: Date.now), for tests. */
  now?: () => number;
}

/**
 * A Nest LoggerService for `LOG_FORMAT=json`: one JSON object per line on stdout,
 *
 *     {"time":"2025-01-01T00:00:00.000Z","level":"info","context":"RouterService","msg":"…"}
 *
 * `level` is info | warn | error | debug | verbose (| fatal); an error's stack goes
 * in `stack`; an object logged as the message adds its fields to the line. Nest's
 * calling conventions are those of ConsoleLogger: a last string argument is the
 * context, `error(message, stack, context)`, and each further message is a line of
 * its own.
 */
export class JsonLogger implements LoggerService {
  private levels: LogLevel[];
  private readonly context?: string;
  private readonly write: (line: string) => void;
  private readonly now: () => number;

  constructor(options: JsonLoggerOptions = {}) {
    this.levels = options.logLevels ?? ['error', 'warn', 'log'];
    this.context = options.context;
    this.write = options.write ?? ((line) => process.stdout.write(line));
    this.now = options.now ?? Date.now;
  }

  setLogLevels(levels: LogLevel[]): void {
    this.levels = [...levels];
  }

  /** Like Nest's: a level is on when listed, or when it is more severe than every level listed (so `fatal` follows `error`). */
  isLevelEnabled(level: LogLevel): boolean {
    if (this.levels.length === 0) return false;
    if (this.levels.includes(level)) return true;
    return SEVERITY[level] > Math.max(...this.levels.map((l) => SEVERITY[l] ?? -1));
  }

  log(message: unknown, ...optionalParams: unknown[]): void {
    this.print('log', [message, ...optionalParams]);
  }

  warn(message: unknown, ...optionalParams: unknown[]): void {
    this.print('warn', [message, ...optionalParams]);
  }

  debug(message: unknown, ...optionalParams: unknown[]): void {
    this.print('debug', [message, ...optionalParams]);
  }

  verbose(message: unknown, ...optionalParams: unknown[]): void {
    this.print('verbose', [message, ...optionalParams]);
  }

  fatal(message: unknown, ...optionalParams: unknown[]): void {
    this.print('fatal', [message, ...optionalParams]);
  }

  error(message: unknown, ...optionalParams: unknown[]): void {
    if (!this.isLevelEnabled('error')) return;
    const args = [message, ...optionalParams];
    let context = this.context;
    let stack: string | undefined;
    let messages: unknown[];
    if (args.length === 2 && isStack(args[1])) {
      // error(message, stack): Logger.error without a context of its own
      messages = [args[0]];
      stack = args[1] as string;
    } else if (args.length === 2) {
      messages = [args[0]];
      context = typeof args[1] === 'string' ? args[1] : context;
      if (typeof args[1] !== 'string') messages.push(args[1]);
    } else {
      ({ messages, context } = this.splitContext(args));
      // error(message, stack, context): the string (or undefined) left last is the stack
      const last = messages[messages.length - 1];
      if (messages.length > 1 && (typeof last === 'string' || last === undefined)) {
        stack = last as string | undefined;
        messages = messages.slice(0, -1);
      }
    }
    for (const m of messages) this.emit('error', context, m, stack);
  }

  private print(level: LogLevel, args: unknown[]): void {
    if (!this.isLevelEnabled(level)) return;
    const { messages, context } = this.splitContext(args);
    for (const m of messages) this.emit(level, context, m);
  }

  /** A last string argument (after the message) is the context. */
  private splitContext(args: unknown[]): { messages: unknown[]; context?: string } {
    if (args.length > 1 && typeof args[args.length - 1] === 'string') {
      return { messages: args.slice(0, -1), context: args[args.length - 1] as string };
    }
    return { messages: args, context: this.context };
  }

  private emit(level: LogLevel, context: string | undefined, message: unknown, stack?: string): void {
    const line: Record<string, unknown> = { time: new Date(this.now()).toISOString(), level: LEVEL_NAMES[level] };
    if (context) line.context = context;
    line.msg = '';
    if (message instanceof Error) {
      line.msg = message.message;
      if (message.name && message.name !== 'Error') line.error = message.name;
      stack ??= message.stack;
    } else if (isPlainObject(message)) {
      // {msg: 'x', user: 'u'} (or {message: 'x', ...}) adds its fields to the line
      const { msg, message: text, ...fields } = message;
      line.msg = typeof msg === 'string' ? msg : typeof text === 'string' ? text : msg === undefined ? '' : safeStringify(msg);
      if (typeof msg === 'string' && text !== undefined) fields.message = text;
      for (const [key, value] of Object.entries(fields)) if (!RESERVED.has(key)) line[key] = value;
    } else if (typeof message === 'string') {
      line.msg = message;
    } else if (message !== undefined) {
      line.msg = safeStringify(message);
    }
    if (stack) line.stack = stack;
    this.write(`${safeStringify(line)}\n`);
  }
}

function isStack(value: unknown): boolean {
  return typeof value === 'string' && STACK_RE.test(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** JSON that never throws: BigInt as a string, a cycle as "[Circular]", an Error as its name and message. */
function safeStringify(value: unknown): string {
  const ancestors: object[] = [];
  try {
    return JSON.stringify(value, function (this: unknown, _key: string, v: unknown) {
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Error) return { name: v.name, message: v.message };
      if (v === null || typeof v !== 'object') return v;
      // `this` is the object holding v: drop the ancestors that are not on its path
      while (ancestors.length > 0 && ancestors[ancestors.length - 1] !== this) ancestors.pop();
      if (ancestors.includes(v)) return '[Circular]';
      ancestors.push(v);
      return v;
    }) ?? '""';
  } catch {
    return JSON.stringify(String(value));
  }
}
