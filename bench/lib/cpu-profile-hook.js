'use strict';
// Preloaded (node -r) into the server under test by `run.js --profile`: the
// first SIGUSR2 starts the V8 CPU profiler, the second stops it and writes the
// profile to $BENCH_CPU_PROFILE, so only the measured window is profiled.
const fs = require('node:fs');
const inspector = require('node:inspector');

const session = new inspector.Session();
session.connect();
let running = false;

process.on('SIGUSR2', () => {
  if (!running) {
    running = true;
    session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 250 }, () => session.post('Profiler.start')));
    return;
  }
  running = false;
  session.post('Profiler.stop', (error, result) => {
    const file = process.env.BENCH_CPU_PROFILE;
    if (!error && file) fs.writeFileSync(`${file}.tmp`, JSON.stringify(result.profile));
    if (!error && file) fs.renameSync(`${file}.tmp`, file);
  });
});
