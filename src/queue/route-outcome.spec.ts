import { RouteOutcome, type RouteResult } from './queue.service';
import { summarizeRoute, type RouteSummary } from './route-outcome';

const result = (outcome: RouteOutcome, more: Partial<RouteResult> = {}): RouteResult => ({ outcome, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false, ...more });

/** A group that stored nothing and asks nothing of this instance. */
const NOTHING: RouteSummary = {
  routed: true,
  stored: false,
  appended: false,
  queued: 0,
  capped: 0,
  capDrop: 'overflow',
  refused: 0,
  handOut: 0,
  wake: false,
  newQueue: false,
  repeated: false,
  conflict: false,
  fenced: false,
};

describe('summarizeRoute', () => {
  it('owed: stored, handed out by this instance only when it holds a socket of the user, less the refused', () => {
    expect(summarizeRoute(3, result(RouteOutcome.Owed))).toEqual({ ...NOTHING, stored: true });
    expect(summarizeRoute(3, result(RouteOutcome.Owed, { mine: true, position: 7 }))).toEqual({ ...NOTHING, stored: true, handOut: 3 });
    expect(summarizeRoute(3, result(RouteOutcome.Owed, { mine: true, refused: 2 }))).toEqual({ ...NOTHING, stored: true, handOut: 1, refused: 2, capped: 2, capDrop: 'rejected' });
    expect(summarizeRoute(3, result(RouteOutcome.Owed, { mine: true, dropped: 4 }))).toEqual({ ...NOTHING, stored: true, handOut: 3, capped: 4, capDrop: 'overflow' });
  });

  it('queued: stored and appended, counting the group less the refused and the replaced', () => {
    expect(summarizeRoute(3, result(RouteOutcome.Queued))).toEqual({ ...NOTHING, stored: true, appended: true, queued: 3 });
    expect(summarizeRoute(3, result(RouteOutcome.Queued, { refused: 1, replaced: 1 }))).toEqual({
      ...NOTHING,
      stored: true,
      appended: true,
      queued: 1,
      refused: 1,
      capped: 1,
      capDrop: 'rejected',
    });
    expect(summarizeRoute(2, result(RouteOutcome.Queued, { dropped: 2 }))).toEqual({ ...NOTHING, stored: true, appended: true, queued: 2, capped: 2 });
    // Everything refused: appended, but nothing of it queued.
    expect(summarizeRoute(2, result(RouteOutcome.Queued, { refused: 2 }))).toMatchObject({ appended: true, queued: 0, refused: 2 });
  });

  it('queued into an empty queue: the queue is to be indexed', () => {
    expect(summarizeRoute(2, result(RouteOutcome.QueuedNew))).toEqual({ ...NOTHING, stored: true, appended: true, queued: 2, newQueue: true });
  });

  it("queued behind what sockets still read: this instance's sockets read on, others' are told by their instance", () => {
    expect(summarizeRoute(2, result(RouteOutcome.QueuedBehind))).toEqual({ ...NOTHING, stored: true, appended: true, queued: 2 });
    expect(summarizeRoute(2, result(RouteOutcome.QueuedBehind, { mine: true }))).toEqual({ ...NOTHING, stored: true, appended: true, queued: 2, wake: true });
  });

  it('fenced: routed, nothing stored', () => {
    expect(summarizeRoute(4, result(RouteOutcome.Fenced))).toEqual({ ...NOTHING, fenced: true });
  });

  it('an inbox entry already stored: routed, a repeat, nothing stored now', () => {
    expect(summarizeRoute(1, result(RouteOutcome.Duplicate))).toEqual({ ...NOTHING, repeated: true });
  });

  it('a repeat or conflict of an idempotency record: not routed at all', () => {
    expect(summarizeRoute(1, result(RouteOutcome.Repeated, { answer: 'm1' }))).toEqual({ ...NOTHING, routed: false, repeated: true });
    expect(summarizeRoute(1, result(RouteOutcome.Conflict))).toEqual({ ...NOTHING, routed: false, conflict: true });
  });
});
