// The SDK's pure parts: the backoff schedule and the bounded dedupe memory.
// Its behaviour on a real server is in test/client.e2e-spec.ts.
import { DEFAULT_RECONNECT, RecentIds, reconnectDelay } from './index';

const o = { ...DEFAULT_RECONNECT, initialDelayMs: 100, maxDelayMs: 1600, busyDelayMs: 5000, shutdownDelayMs: 1000 };
const top = () => 0.999999;
const bottom = () => 0;

describe('reconnectDelay', () => {
  it('doubles the jitter window per attempt up to maxDelayMs (full jitter: anywhere from 0)', () => {
    expect([0, 1, 2, 3, 4, 5, 20, 5000].map((n) => Math.round(reconnectDelay(1006, n, o, top)))).toEqual([100, 200, 400, 800, 1600, 1600, 1600, 1600]);
    expect(reconnectDelay(undefined, 3, o, bottom)).toBe(0);
    expect(reconnectDelay(undefined, 3, o, () => 0.5)).toBe(400);
  });

  it('waits at least busyDelayMs after 4429 and 1013, longer as attempts grow', () => {
    for (const code of [4429, 1013]) {
      expect(reconnectDelay(code, 0, o, bottom)).toBe(5000);
      expect(Math.round(reconnectDelay(code, 0, o, top))).toBe(10000);
    }
    const slow = { ...o, maxDelayMs: 60_000 };
    expect(Math.round(reconnectDelay(4429, 10, slow, top))).toBe(65_000);
  });

  it('comes back within shutdownDelayMs after 1001, whatever the attempt', () => {
    expect(Math.round(reconnectDelay(1001, 0, o, top))).toBe(1000);
    expect(Math.round(reconnectDelay(1001, 10, o, top))).toBe(1000);
    expect(reconnectDelay(1001, 10, o, bottom)).toBe(0);
  });
});

describe('RecentIds', () => {
  it('remembers the last max ids and forgets the oldest first', () => {
    const ids = new RecentIds(3);
    for (const id of ['a', 'b', 'c', 'd']) ids.add(id);
    expect(['a', 'b', 'c', 'd'].map((id) => ids.has(id))).toEqual([false, true, true, true]);
    expect(ids.size).toBe(3);
  });

  it('counts an id added again as recent', () => {
    const ids = new RecentIds(2);
    ids.add('a');
    ids.add('b');
    ids.add('a');
    ids.add('c');
    expect([ids.has('a'), ids.has('b'), ids.has('c')]).toEqual([true, false, true]);
  });

  it('stays bounded over many ids', () => {
    const ids = new RecentIds(10_000);
    for (let i = 0; i < 50_000; i++) ids.add(String(i));
    expect(ids.size).toBe(10_000);
    expect(ids.has('39999')).toBe(false);
    expect(ids.has('40000')).toBe(true);
  });
});
