import { ConsoleLogger, Logger, type LogLevel } from '@nestjs/common';
import { createLogger, useLogger } from './create-logger';
import { JsonLogger } from './json-logger';

const NOW = Date.parse('2025-03-04T05:06:07.089Z');

/** A JsonLogger writing into an array; `lines()` parses what it wrote. */
function capture(logLevels: LogLevel[] = ['error', 'warn', 'log', 'debug', 'verbose'], context?: string) {
  const out: string[] = [];
  const logger = new JsonLogger({ logLevels, context, write: (line) => out.push(line), now: () => NOW });
  return {
    logger,
    raw: out,
    lines: () =>
      out.map((line) => {
        expect(line.endsWith('\n')).toBe(true);
        expect(line.slice(0, -1)).not.toContain('\n'); // one object per line, whatever the message held
        return JSON.parse(line);
      }),
  };
}

describe('JsonLogger', () => {
  it('writes one JSON object per line with time, level, context and msg', () => {
    const { logger, lines } = capture();

    logger.log('RedMessenger listening on port 8080', 'RedMessenger');
    logger.warn('slow', 'RouterService');
    logger.debug('New message from channel rm.users.u1', 'RouterService');
    logger.verbose('detail', 'Ctx');

    expect(lines()).toEqual([
      { time: '2025-03-04T05:06:07.089Z', level: 'info', context: 'RedMessenger', msg: 'RedMessenger listening on port 8080' },
      { time: '2025-03-04T05:06:07.089Z', level: 'warn', context: 'RouterService', msg: 'slow' },
      { time: '2025-03-04T05:06:07.089Z', level: 'debug', context: 'RouterService', msg: 'New message from channel rm.users.u1' },
      { time: '2025-03-04T05:06:07.089Z', level: 'verbose', context: 'Ctx', msg: 'detail' },
    ]);
  });

  it('writes to stdout by default', () => {
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      new JsonLogger().log('to stdout', 'Ctx');
      expect(spy).toHaveBeenCalledTimes(1);
      expect(JSON.parse(String(spy.mock.calls[0][0]))).toMatchObject({ level: 'info', context: 'Ctx', msg: 'to stdout' });
    } finally {
      spy.mockRestore();
    }
  });

  it('keeps a message with newlines and quotes on one line', () => {
    const { logger, lines } = capture();

    logger.log('two\nlines "quoted" \u2028 ünï', 'Ctx');

    expect(lines()[0].msg).toBe('two\nlines "quoted" \u2028 ünï');
  });

  describe('error', () => {
    it('puts the stack of error(message, stack, context) in "stack"', () => {
      const { logger, lines } = capture();
      const stack = new Error('boom').stack!;

      logger.error('Routing 3 messages failed: boom', stack, 'RouterService');

      expect(lines()).toEqual([
        { time: '2025-03-04T05:06:07.089Z', level: 'error', context: 'RouterService', msg: 'Routing 3 messages failed: boom', stack },
      ]);
    });

    it('tells error(message, stack) from error(message, context)', () => {
      const { logger, lines } = capture();
      const stack = new Error('boom').stack!;

      logger.error('with stack', stack);
      logger.error('with context', 'Ctx');

      expect(lines()[0]).toMatchObject({ msg: 'with stack', stack });
      expect(lines()[0].context).toBeUndefined();
      expect(lines()[1]).toEqual({ time: expect.any(String), level: 'error', context: 'Ctx', msg: 'with context' });
    });

    it('takes the message and stack of an Error object', () => {
      const { logger, lines } = capture();
      const error = new TypeError('bad thing');

      logger.error(error, undefined, 'Ctx');

      expect(lines()[0]).toMatchObject({ level: 'error', context: 'Ctx', msg: 'bad thing', error: 'TypeError', stack: error.stack });
    });

    it('works through a Nest Logger with a context, as the services call it', () => {
      const { logger, lines } = capture();
      Logger.overrideLogger(logger);
      try {
        new Logger('DeliveryService').error('u1: detach failed: Connection is closed.');
        new Logger('DeliveryService').log('u1: Client is no longer online');
      } finally {
        Logger.overrideLogger(new ConsoleLogger());
      }

      expect(lines()).toEqual([
        { time: expect.any(String), level: 'error', context: 'DeliveryService', msg: 'u1: detach failed: Connection is closed.' },
        { time: expect.any(String), level: 'info', context: 'DeliveryService', msg: 'u1: Client is no longer online' },
      ]);
    });
  });

  it('adds the fields of an object message to the line, never overwriting time, level or context', () => {
    const { logger, lines } = capture();

    logger.log({ msg: 'routed', batch: 3, users: ['a', 'b'], level: 'fake', time: 'fake' }, 'RouterService');
    logger.warn({ message: 'from message', code: 'X' }, 'Ctx');
    logger.log({ count: 1 }, 'Ctx');

    expect(lines()).toEqual([
      { time: '2025-03-04T05:06:07.089Z', level: 'info', context: 'RouterService', msg: 'routed', batch: 3, users: ['a', 'b'] },
      { time: '2025-03-04T05:06:07.089Z', level: 'warn', context: 'Ctx', msg: 'from message', code: 'X' },
      { time: '2025-03-04T05:06:07.089Z', level: 'info', context: 'Ctx', msg: '', count: 1 },
    ]);
  });

  it('writes each further message on a line of its own, as ConsoleLogger does', () => {
    const { logger, lines } = capture();

    logger.log('first', 'second', 'Ctx');

    expect(lines().map((l) => [l.msg, l.context])).toEqual([
      ['first', 'Ctx'],
      ['second', 'Ctx'],
    ]);
  });

  it('never throws on values JSON cannot hold', () => {
    const { logger, lines } = capture();
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    const shared = { x: 1 };

    logger.log({ msg: 'odd', big: 10n, cyclic, a: shared, b: shared, cause: new Error('inner') }, 'Ctx');
    logger.log(42, 'Ctx');
    logger.log(undefined);

    const [odd, number, nothing] = lines();
    expect(odd).toMatchObject({ msg: 'odd', big: '10', cyclic: { name: 'loop', self: '[Circular]' }, a: { x: 1 }, b: { x: 1 } });
    expect(odd.cause).toEqual({ name: 'Error', message: 'inner' });
    expect(number.msg).toBe('42');
    expect(nothing).toEqual({ time: expect.any(String), level: 'info', msg: '' });
  });

  it('uses its default context when a call names none', () => {
    const { logger, lines } = capture(undefined, 'Default');

    logger.log('no context');

    expect(lines()[0].context).toBe('Default');
  });

  describe('levels', () => {
    it('writes only the enabled levels, fatal whenever error is', () => {
      const { logger, lines } = capture(['error', 'warn']);

      logger.verbose('v', 'C');
      logger.debug('d', 'C');
      logger.log('l', 'C');
      logger.warn('w', 'C');
      logger.error('e', 'C');
      logger.fatal('f', 'C');

      expect(lines().map((l) => l.level)).toEqual(['warn', 'error', 'fatal']);
    });

    it('follows setLogLevels', () => {
      const { logger, lines } = capture(['error']);

      logger.log('hidden', 'C');
      logger.setLogLevels(['error', 'warn', 'log', 'debug']);
      logger.debug('shown', 'C');
      logger.setLogLevels([]);
      logger.error('hidden too', 'C');

      expect(lines().map((l) => l.msg)).toEqual(['shown']);
    });

    it('defaults to error, warn and log', () => {
      const logger = new JsonLogger({ write: () => undefined });

      expect((['error', 'warn', 'log', 'debug', 'verbose'] as LogLevel[]).filter((level) => logger.isLevelEnabled(level))).toEqual([
        'error',
        'warn',
        'log',
      ]);
    });
  });
});

describe('createLogger', () => {
  it('gives a JsonLogger for json and a ConsoleLogger for text, with the levels given', () => {
    const json = createLogger('json', ['error', 'warn']);
    const text = createLogger('text', ['error', 'warn', 'log', 'debug']);

    expect(json).toBeInstanceOf(JsonLogger);
    expect((json as JsonLogger).isLevelEnabled('log')).toBe(false);
    expect(text).toBeInstanceOf(ConsoleLogger);
    expect((text as ConsoleLogger).isLevelEnabled('debug')).toBe(true);
    expect((text as ConsoleLogger).isLevelEnabled('verbose')).toBe(false);
  });
});

describe('useLogger', () => {
  afterEach(() => {
    Logger.overrideLogger(new ConsoleLogger());
    Logger.overrideLogger(['error', 'warn', 'log']);
  });

  it("installs the logger on the app and keeps Logger.isLevelEnabled() on the same levels", () => {
    const installed: unknown[] = [];
    const app = { useLogger: (logger: unknown) => installed.push(logger) };

    useLogger(app as never, 'json', ['error', 'warn', 'log', 'debug']);

    expect(installed).toHaveLength(1);
    expect(installed[0]).toBeInstanceOf(JsonLogger);
    expect(Logger.isLevelEnabled('debug')).toBe(true);
    expect(Logger.isLevelEnabled('verbose')).toBe(false);
  });
});
