/** Where the lines go: a Nest Logger, say. */
export interface WarnSink {
  warn(message: string): void;
}

/**
 * Warnings a client or publisher can cause by the thousand (an invalid channel, an
 * invalid group member, a full route buffer...) at most one line per `intervalMs`
 * per kind, so a flood cannot fill the disk. The first of a kind is written at once;
 * the ones held back after it are told at the end of the interval, as one line (the
 * latest of them, and how many more there were). Their counters stay exact in metrics.
 */
export class RateLimitedLog {
  private readonly kinds = new Map<string, { at: number; held: number; latest: string; timer?: NodeJS.Timeout }>();

  constructor(
    private readonly sink: WarnSink,
    private readonly intervalMs = 1000,
  ) {}

  /** `kind`: a fixed name, never taken from the input (the kinds are remembered). */
  warn(kind: string, message: string): void {
    const now = Date.now();
    const state = this.kinds.get(kind);
    if (!state || (state.held === 0 && now - state.at >= this.intervalMs)) {
      this.kinds.set(kind, { at: now, held: 0, latest: '' });
      return this.sink.warn(message);
    }
    state.held++;
    state.latest = message;
    state.timer ??= setTimeout(() => this.flush(kind), Math.max(0, state.at + this.intervalMs - now)).unref();
  }

  /** The line for what a kind held back; the next interval starts now. */
  private flush(kind: string): void {
    const state = this.kinds.get(kind)!;
    const more = state.held - 1;
    this.sink.warn(more > 0 ? `${state.latest} (and ${more} more like it in the last ${Math.round((Date.now() - state.at) / 1000) || 1} s)` : state.latest);
    this.kinds.set(kind, { at: Date.now(), held: 0, latest: '' });
  }
}
