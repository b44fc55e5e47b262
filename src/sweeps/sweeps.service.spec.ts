import type { ShardsService } from '../router/shards.service';
import { SweepsService, type Sweep } from './sweeps.service';

/** The one timer of the shard-0 sweeps: each sweep at its own period, only on shard 0's holder, never two runs of one at once. */
describe('SweepsService', () => {
  let holds = true;
  const shards = { holds: (shard: number) => shard === 0 && holds } as unknown as ShardsService;

  /** A sweep whose runs are counted and can be held open. */
  const sweepOf = (everyMs: number, budgetMs = everyMs * 0.8) => {
    const sweep = {
      everyMs,
      budgetMs,
      runs: 0,
      release: undefined as undefined | (() => void),
      more: undefined as undefined | (() => boolean),
      hold: false,
      async pass(_now: number, more: () => boolean): Promise<number> {
        sweep.runs++;
        sweep.more = more;
        if (sweep.hold) await new Promise<void>((resolve) => (sweep.release = resolve));
        return 1;
      },
    };
    return sweep satisfies Sweep;
  };

  beforeEach(() => {
    holds = true;
    jest.useFakeTimers();
  });
  afterEach(() => jest.useRealTimers());

  it('runs each sweep every its own period from one timer', async () => {
    const service = new SweepsService(shards);
    const fast = sweepOf(1000);
    const slow = sweepOf(5000);
    service.register(fast);
    service.register(slow);
    service.onModuleInit();
    await jest.advanceTimersByTimeAsync(10_000);
    expect([fast.runs, slow.runs]).toEqual([10, 2]);
    service.onApplicationShutdown();
    await jest.advanceTimersByTimeAsync(10_000);
    expect([fast.runs, slow.runs]).toEqual([10, 2]);
  });

  it('runs nothing on an instance that does not hold shard 0', async () => {
    const service = new SweepsService(shards);
    const sweep = sweepOf(1000);
    holds = false;
    await expect(service.run(sweep)).resolves.toBe(0);
    expect(sweep.runs).toBe(0);
  });

  it('never runs one sweep twice at once, and its budget and shard 0 bound its pages', async () => {
    const service = new SweepsService(shards);
    const sweep = sweepOf(1000, 800);
    sweep.hold = true;
    const first = service.run(sweep);
    await expect(service.run(sweep)).resolves.toBe(0);
    expect(sweep.runs).toBe(1);
    expect(sweep.more?.()).toBe(true);
    jest.advanceTimersByTime(800);
    expect(sweep.more?.()).toBe(false);
    sweep.release?.();
    await expect(first).resolves.toBe(1);
    sweep.hold = false;
    await expect(service.run(sweep)).resolves.toBe(1);
    holds = false;
    expect(sweep.more?.()).toBe(false);
  });
});
