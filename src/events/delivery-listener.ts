import type { DROP_CAUSES } from '../metrics/metrics.constants';

/** A message of a user: handed to one of its sockets (`delivered`), or acked by one (`acked`). */
export interface MessageEvent {
  user: string;
  id: string;
  channel: string;
}

/** Messages of a user appended to its queue (the user is offline, or its sockets still read older ones). */
export interface QueuedEvent {
  user: string;
  count: number;
}

/** Why messages were dropped: the queue cap (drop-oldest), the queue cap (reject), or their time to live. */
export type DropCause = (typeof DROP_CAUSES)[number];

export interface DroppedEvent {
  user: string;
  count: number;
  reason: DropCause;
}

/**
 * Delivery hooks for a host application: `RedMessengerModule.forRoot({ listener: MyListener })`.
 * Implement the methods you need. They are called synchronously on the instance
 * where the fact happened, right after Redis stored it, and never awaited: keep
 * them short (hand work to a queue of your own). A hook that throws (or whose
 * promise rejects) is logged and ignored. `delivered` is called once per socket a
 * message is sent to (again if it comes again after a requeue); `acked` once per
 * message (the first ack of any socket of the user counts).
 */
export abstract class DeliveryListener {
  delivered?(event: MessageEvent): void;
  queued?(event: QueuedEvent): void;
  acked?(event: MessageEvent): void;
  dropped?(event: DroppedEvent): void;
}
