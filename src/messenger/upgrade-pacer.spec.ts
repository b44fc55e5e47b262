import { UpgradePacer } from './messenger-ws.adapter';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('UpgradePacer', () => {
  it('completes every upgrade in arrival order, a turn of the event loop at a time', async () => {
    let clock = 0;
    // Each completion takes 1 ms of the 3 ms a turn may spend.
    const pacer = new UpgradePacer(3, () => clock);
    const completed: number[] = [];
    for (let i = 0; i < 10; i++)
      pacer.admit(() => {
        completed.push(i);
        clock += 1;
      });
    expect(completed).toEqual([]); // nothing inside the event that admitted them
    await turn();
    expect(completed).toEqual([0, 1, 2]);
    await turn();
    expect(completed).toEqual([0, 1, 2, 3, 4, 5]);
    await turn();
    await turn();
    expect(completed).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('takes new upgrades after it ran dry', async () => {
    const pacer = new UpgradePacer();
    const completed: string[] = [];
    pacer.admit(() => completed.push('a'));
    await turn();
    pacer.admit(() => completed.push('b'));
    await turn();
    expect(completed).toEqual(['a', 'b']);
  });
});
