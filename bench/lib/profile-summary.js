'use strict';
// Summarises a V8 .cpuprofile: self time by package / area, the top functions
// by self time, and RedMessenger's own functions by inclusive time.
const fs = require('node:fs');

function area(url, name) {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  const dist = /\/dist\/(.+?)(?:\.js)?$/.exec(url);
  if (dist) return `redmessenger/${dist[1].split('/')[0]}`;
  if (url.startsWith('node:'))
    return `node:${
      url
        .slice(5)
        .replace(/^internal\//, '')
        .split('/')[0]
    }`;
  return url;
}

function summarise(file, top = 15) {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    self.set(id, (self.get(id) || 0) + (profile.timeDeltas[i] || 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self.entries()].filter(([id]) => byId.get(id).callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0);
  const busy = total - idle;
  const key = (n) => {
    const f = n.callFrame;
    const short = f.url
      ? f.url
          .replace(/^.*node_modules\//, '')
          .replace(/^.*\/dist\//, 'dist/')
          .replace(/^file:\/\//, '')
      : '';
    return `${f.functionName || '(anonymous)'} ${short}${short ? `:${f.lineNumber + 1}` : ''}`;
  };
  const areas = new Map();
  const fns = new Map();
  for (const [id, t] of self) {
    const n = byId.get(id);
    if (n.callFrame.functionName === '(idle)') continue;
    const a = area(n.callFrame.url, n.callFrame.functionName);
    areas.set(a, (areas.get(a) || 0) + t);
    const k = key(n);
    fns.set(k, (fns.get(k) || 0) + t);
  }
  // Inclusive time of RedMessenger's own functions (recursion counted once).
  const incl = new Map();
  const onPath = new Map();
  const root = profile.nodes[0];
  const stack = [[root, false]];
  while (stack.length) {
    const [n, leaving] = stack.pop();
    const k = n.callFrame.url.includes('/dist/') ? key(n) : null;
    if (leaving) {
      if (k) onPath.set(k, onPath.get(k) - 1);
      continue;
    }
    if (k) onPath.set(k, (onPath.get(k) || 0) + 1);
    const t = self.get(n.id) || 0;
    if (t) for (const [pk, c] of onPath) if (c > 0) incl.set(pk, (incl.get(pk) || 0) + t);
    stack.push([n, true]);
    for (const c of n.children || []) stack.push([byId.get(c), false]);
  }
  const pct = (t) => `${((100 * t) / busy).toFixed(1).padStart(5)}%`;
  const sorted = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  const lines = [];
  lines.push(`CPU profile ${file}: ${(busy / 1000).toFixed(0)} ms busy of ${(total / 1000).toFixed(0)} ms sampled`);
  lines.push('', 'Self time by area (% of busy):');
  for (const [a, t] of sorted(areas).slice(0, top)) lines.push(`  ${pct(t)}  ${a}`);
  lines.push('', 'Top functions by self time:');
  for (const [f, t] of sorted(fns).slice(0, top)) lines.push(`  ${pct(t)}  ${f}`);
  lines.push('', "RedMessenger's functions by inclusive time:");
  for (const [f, t] of sorted(incl).slice(0, top)) lines.push(`  ${pct(t)}  ${f}`);
  return lines.join('\n');
}

module.exports = { summarise };

if (require.main === module) console.log(summarise(process.argv[2], Number(process.argv[3]) || 15));
