import { Logger, type LogLevel } from '@nestjs/common';
import { colorsWanted, createLogger } from './create-logger';

const ALL: LogLevel[] = ['error', 'warn', 'log', 'debug', 'verbose'];

/** Runs `fn` with stdout and stderr captured; returns what each received. */
function capture(fn: () => void): { stdout: string; stderr: string } {
  const out = { stdout: '', stderr: '' };
  const spies = (['stdout', 'stderr'] as const).map((name) =>
    jest.spyOn(process[name], 'write').mockImplementation((chunk: string | Uint8Array) => {
      out[name] += String(chunk);
      return true;
    }),
  );
  try {
    fn();
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
  return out;
}

/** Each line of `text` parsed, checking that it is exactly one JSON object per line. */
const parseLines = (text: string) =>
  text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line));

describe('createLogger', () => {
  it('json: one JSON object per line with level, pid, timestamp, context and message', () => {
    const logger = createLogger('json', ALL);
    const before = Date.now();

    const { stdout } = capture(() => {
      logger.log('RedMessenger listening on port 8080', 'RedMessenger');
      logger.warn('two\nlines "quoted" \u2028 ünï', 'RouterService');
      logger.debug?.('New message from channel rm.users.u1', 'RouterService');
    });

    const lines = parseLines(stdout);
    expect(stdout.split('\n').filter(Boolean)).toHaveLength(3);
    expect(lines).toEqual([
      { level: 'log', pid: process.pid, timestamp: expect.any(Number), context: 'RedMessenger', message: 'RedMessenger listening on port 8080' },
      { level: 'warn', pid: process.pid, timestamp: expect.any(Number), context: 'RouterService', message: 'two\nlines "quoted" \u2028 ünï' },
      { level: 'debug', pid: process.pid, timestamp: expect.any(Number), context: 'RouterService', message: 'New message from channel rm.users.u1' },
    ]);
    expect(lines[0].timestamp).toBeGreaterThanOrEqual(before);
    expect(stdout).not.toContain('\u001b['); // no color codes
  });

  it('json: an error goes to stderr as one line, its stack in "stack"', () => {
    const logger = createLogger('json', ALL);
    const stack = new Error('boom').stack!;

    const { stdout, stderr } = capture(() => logger.error('Routing 3 messages failed: boom', stack, 'RouterService'));

    expect(stdout).toBe('');
    expect(parseLines(stderr)).toEqual([{ level: 'error', pid: process.pid, timestamp: expect.any(Number), context: 'RouterService', message: 'Routing 3 messages failed: boom', stack }]);
  });

  it('json: works through a Nest Logger with a context, as the services call it, and prints only the given levels', () => {
    const logger = createLogger('json', ['error', 'warn', 'log']);
    Logger.overrideLogger(logger);
    try {
      const { stdout } = capture(() => {
        new Logger('DeliveryService').log('u1: Client is no longer online');
        new Logger('DeliveryService').debug('not printed at log level');
      });
      expect(parseLines(stdout)).toEqual([expect.objectContaining({ level: 'log', context: 'DeliveryService', message: 'u1: Client is no longer online' })]);
    } finally {
      Logger.overrideLogger(ALL);
    }
  });

  it('text: readable lines with the level and context', () => {
    const logger = createLogger('text', ALL);

    const { stdout } = capture(() => logger.log('hello', 'Ctx'));

    expect(stdout.replace(/\u001b\[[0-9;]*m/g, '')).toMatch(/LOG \[Ctx\] hello\n$/);
  });

  describe('text: colour only on a terminal', () => {
    const ANSI = /\u001b\[[0-9;]*m/;
    const original = Object.getOwnPropertyDescriptor(process.stdout, 'isTTY');
    const setTTY = (value: boolean | undefined) => Object.defineProperty(process.stdout, 'isTTY', { value, configurable: true, writable: true });
    const noColor = process.env.NO_COLOR;
    beforeEach(() => delete process.env.NO_COLOR);
    afterEach(() => {
      if (original) Object.defineProperty(process.stdout, 'isTTY', original);
      else delete (process.stdout as { isTTY?: boolean }).isTTY;
      if (noColor === undefined) delete process.env.NO_COLOR;
      else process.env.NO_COLOR = noColor;
    });

    it('no ANSI codes when stdout is not a terminal (a pipe, a file, a container log)', () => {
      setTTY(undefined);
      const { stdout, stderr } = capture(() => {
        const logger = createLogger('text', ALL);
        logger.log('hello', 'Ctx');
        logger.warn('careful', 'Ctx');
        logger.error('boom', 'a stack', 'Ctx');
      });
      expect(stdout).toMatch(/LOG \[Ctx\] hello\n/);
      expect(stdout).not.toMatch(ANSI);
      expect(stderr).toMatch(/ERROR \[Ctx\] boom/);
      expect(stderr).not.toMatch(ANSI);
    });

    it('coloured on a terminal, unless NO_COLOR is set', () => {
      setTTY(true);
      expect(capture(() => createLogger('text', ALL).log('hello', 'Ctx')).stdout).toMatch(ANSI);
      process.env.NO_COLOR = '1';
      expect(capture(() => createLogger('text', ALL).log('hello', 'Ctx')).stdout).not.toMatch(ANSI);
    });

    it('colorsWanted: a TTY and no NO_COLOR', () => {
      expect(colorsWanted({ isTTY: true }, {})).toBe(true);
      expect(colorsWanted({ isTTY: false }, {})).toBe(false);
      expect(colorsWanted({}, {})).toBe(false);
      expect(colorsWanted({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    });
  });
});
