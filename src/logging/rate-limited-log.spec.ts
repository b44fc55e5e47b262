import { RateLimitedLog } from './rate-limited-log';

describe('RateLimitedLog', () => {
  let lines: string[];
  let log: RateLimitedLog;

  beforeEach(() => {
    jest.useFakeTimers();
    lines = [];
    log = new RateLimitedLog({ warn: (line) => lines.push(line) }, 1000);
  });
  afterEach(() => jest.useRealTimers());

  it('writes the first line of a kind at once', () => {
    log.warn('a', 'first');
    expect(lines).toEqual(['first']);
  });

  it('holds back the rest of the interval, then writes the latest with how many more there were', () => {
    for (let i = 0; i < 10_000; i++) log.warn('a', `line ${i}`);
    expect(lines).toEqual(['line 0']);

    jest.advanceTimersByTime(1000);
    expect(lines).toEqual(['line 0', 'line 9999 (and 9998 more like it in the last 1 s)']);
  });

  it('a single held-back line is written as it is', () => {
    log.warn('a', 'one');
    log.warn('a', 'two');
    jest.advanceTimersByTime(1000);
    expect(lines).toEqual(['one', 'two']);
  });

  it('a steady flood is one line per interval, and every line is accounted for', () => {
    let calls = 0;
    for (let ms = 0; ms < 10_000; ms += 10) {
      for (let i = 0; i < 5; i++, calls++) log.warn('a', 'flood');
      jest.advanceTimersByTime(10);
    }
    jest.advanceTimersByTime(1000);

    expect(lines.length).toBeLessThanOrEqual(11);
    const told = lines.reduce((sum, line) => sum + 1 + Number(/and (\d+) more/.exec(line)?.[1] ?? 0), 0);
    expect(told).toBe(calls);
  });

  it('kinds are limited apart; a quiet kind writes at once again', () => {
    log.warn('a', 'a1');
    log.warn('b', 'b1');
    jest.advanceTimersByTime(1500);
    log.warn('a', 'a2');
    expect(lines).toEqual(['a1', 'b1', 'a2']);
  });
});
