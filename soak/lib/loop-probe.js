'use strict';
// Preloaded into the server under soak (`node -r soak/lib/loop-probe.js dist/main.js`):
// every SOAK_PROBE_MS (5 s) appends one JSON line to SOAK_PROBE_FILE with the event-loop
// delay (p50/p99/max over the interval), event-loop utilisation, memory and active
// handles. It changes nothing in the server: an unref'd timer and a sync append.
const file = process.env.SOAK_PROBE_FILE;
if (file) {
  const fs = require('node:fs');
  const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
  const every = Number(process.env.SOAK_PROBE_MS) || 5000;
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  let elu = performance.eventLoopUtilization();
  const ms = (ns) => Math.round(ns / 1e4) / 100;
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const d = performance.eventLoopUtilization(now, elu);
    elu = now;
    const mem = process.memoryUsage();
    const line = {
      t: Date.now(),
      pid: process.pid,
      elu: Math.round(d.utilization * 1000) / 1000,
      lagP50Ms: ms(delay.percentile(50)),
      lagP99Ms: ms(delay.percentile(99)),
      lagMaxMs: ms(delay.max),
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      external: mem.external,
      handles: typeof process.getActiveResourcesInfo === 'function' ? process.getActiveResourcesInfo().length : undefined,
    };
    delay.reset();
    try {
      fs.appendFileSync(file, `${JSON.stringify(line)}\n`);
    } catch {
      // the soak driver removed the file: nothing to report to
    }
  }, every);
  timer.unref();
}
