import type { CapDrop } from '../metrics/metrics.constants';
import { RouteOutcome, type RouteResult } from './queue.service';

/**
 * What route.lua's answer for one group means, read in one place: the store (what this
 * instance does), the events (what listeners are told) and the publish path (what the
 * producer is answered) read these fields instead of the outcome letters.
 */
export interface RouteSummary {
  /** The script took the group in (counted as routed): anything but a repeat or conflict of an idempotency record. */
  routed: boolean;
  /** This call stored the group, owed or queued (less `refused`, and less what replaced a queued message). */
  stored: boolean;
  /** The group went to the queue (not owed). */
  appended: boolean;
  /** How many of it are queued now: the group less the refused and those that replaced a queued message (0 unless appended). */
  queued: number;
  /** Messages the queue cap (MAX_QUEUE_LENGTH) took, and how: route.lua either drops the oldest or refuses the new ones (QUEUE_OVERFLOW). */
  capped: number;
  capDrop: CapDrop;
  /** The group's last messages refused past the cap: not stored. */
  refused: number;
  /** Owed to sockets of this instance: how many of the group's first messages it hands them itself (from `position`). */
  handOut: number;
  /** Queued behind what sockets of this instance still read: they read on. */
  wake: boolean;
  /** Queued into an empty queue: the queue is indexed (for the sweeps). */
  newQueue: boolean;
  /** Stored before: a repeat of a recorded request (its `answer`), or an inbox entry already stored. */
  repeated: boolean;
  /** A recorded request with another body: nothing stored. */
  conflict: boolean;
  /** Heard under a lapsed shard lease while another instance routed the user: nothing stored. */
  fenced: boolean;
}

const QUEUED = new Set<RouteOutcome>([RouteOutcome.Queued, RouteOutcome.QueuedNew, RouteOutcome.QueuedBehind]);

/** The summary of a group of `n` messages' route result. */
export function summarizeRoute(n: number, result: RouteResult): RouteSummary {
  const { outcome, dropped, refused, replaced, mine } = result;
  const appended = QUEUED.has(outcome);
  const stored = appended || outcome === RouteOutcome.Owed;
  return {
    routed: outcome !== RouteOutcome.Repeated && outcome !== RouteOutcome.Conflict,
    stored,
    appended,
    queued: appended ? n - refused - replaced : 0,
    // One or the other is 0: route.lua drops the oldest or refuses, as QUEUE_OVERFLOW says.
    capped: dropped + refused,
    capDrop: refused > 0 ? 'rejected' : 'overflow',
    refused,
    handOut: outcome === RouteOutcome.Owed && mine ? n - refused : 0,
    wake: outcome === RouteOutcome.QueuedBehind && mine,
    newQueue: outcome === RouteOutcome.QueuedNew,
    repeated: outcome === RouteOutcome.Repeated || outcome === RouteOutcome.Duplicate,
    conflict: outcome === RouteOutcome.Conflict,
    fenced: outcome === RouteOutcome.Fenced,
  };
}
