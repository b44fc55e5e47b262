// Polling for conditions that have no event to wait on (Redis state, log content).
import { sleep } from './proc';

export interface WaitOptions {
  /** Between checks (default 25 ms). */
  intervalMs?: number;
  /** Appended to the timeout's message on a line of its own, e.g. the logs of the processes involved. */
  detail?: () => string;
}

/**
 * Polls cond until it is true; past timeoutMs, throws naming what was awaited and the
 * last error a check threw (a throwing check counts as "not yet").
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition', opts: WaitOptions = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await cond()) return;
      lastError = undefined;
    } catch (err) {
      lastError = err; // a throwing check counts as "not yet", but is reported
    }
    if (Date.now() > deadline) {
      const cause = lastError === undefined ? '' : ` (last check threw: ${String(lastError)})`;
      const detail = opts.detail ? `\n${opts.detail()}` : '';
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${cause}${detail}`);
    }
    await sleep(opts.intervalMs ?? 25);
  }
}

/** Resolves as `p` does, or rejects once `ms` have passed, saying what was awaited. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
