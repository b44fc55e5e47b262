/**
 * The one owner of the control lines format: what shards-1.lua publishes on the control
 * channel (`rm:control`) as a route shard changes hands, heard by every instance in order
 * with the published messages. The script builds them with router/lua/includes/control.lua;
 * ShardsService reads them with `parseControlLine`.
 *
 *     h|shard|to|epoch   the holder of the shard's lease with this epoch hands it over to `to`:
 *                        it routes what it heard before the line, `to` what it heard after
 *     t|shard|to|epoch   the hand-over is complete: `to` holds the shard, with this (new) epoch
 *
 * shard and epoch are non-negative integers; `to` is an instance id (no '|').
 */
export type ControlLine = HandOverLine | TakenLine;

/** `h|shard|to|epoch` */
export interface HandOverLine {
  kind: 'handOver';
  shard: number;
  to: string;
  /** The epoch of the lease being handed over (the new holder's is one more). */
  epoch: number;
}

/** `t|shard|to|epoch` */
export interface TakenLine {
  kind: 'taken';
  shard: number;
  to: string;
  /** The new holder's epoch. */
  epoch: number;
}

const KIND_CHARS = { handOver: 'h', taken: 't' } as const;

/** The line, byte for byte what control.lua builds (for tests: the server only reads control lines). */
export const formatControlLine = ({ kind, shard, to, epoch }: ControlLine): string => `${KIND_CHARS[kind]}|${shard}|${to}|${epoch}`;

const LINE = /^([ht])\|(\d{1,15})\|([^|]*)\|(\d{1,15})$/;

/** One control line, or undefined for an unknown kind or a malformed line. */
export function parseControlLine(line: string): ControlLine | undefined {
  const match = LINE.exec(line);
  if (!match) return undefined;
  const [, kind, shard, to, epoch] = match;
  return { kind: kind === 'h' ? 'handOver' : 'taken', shard: Number(shard), to, epoch: Number(epoch) };
}
