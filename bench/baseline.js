'use strict';
// The bare baseline: PSUBSCRIBE rm.users.* bridged to identified WebSocket
// sockets, with RedMessenger's identify / ready / message frames. No queue, no
// acks (ack frames are read and ignored), no validation beyond the id pattern.
// Env: PORT, REDIS_URL. Serves GET anything with 200 so the bench can poll it.
const http = require('node:http');
const { WebSocketServer } = require('ws');
const Redis = require('ioredis');

const ID = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
const PREFIX = 'rm.users.';
const byUser = new Map(); // user id -> Set<WebSocket>
let seq = 0;

const server = http.createServer((req, res) => res.end('ok'));
const wss = new WebSocketServer({ server, perMessageDeflate: false, skipUTF8Validation: true });

wss.on('connection', (ws) => {
  ws.on('message', (raw) => {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    const id = frame && frame.event === 'identify' && frame.data && frame.data.id;
    if (ws.user || typeof id !== 'string' || !ID.test(id)) return;
    ws.user = id;
    let sockets = byUser.get(id);
    if (!sockets) byUser.set(id, (sockets = new Set()));
    sockets.add(ws);
    ws.send(JSON.stringify({ event: 'ready', data: { id, channel: PREFIX + id, queued: 0 } }));
  });
  ws.on('close', () => {
    const sockets = ws.user && byUser.get(ws.user);
    if (!sockets) return;
    sockets.delete(ws);
    if (sockets.size === 0) byUser.delete(ws.user);
  });
});

const sub = new Redis(process.env.REDIS_URL);
sub.on('pmessage', (_pattern, channel, payload) => {
  const sockets = byUser.get(channel.slice(PREFIX.length));
  if (!sockets) return;
  const frame = JSON.stringify({ event: 'message', data: { id: String(++seq), channel, payload, ts: Date.now() } });
  for (const ws of sockets) ws.send(frame);
});

sub.psubscribe(`${PREFIX}*`).then(() => server.listen(Number(process.env.PORT), '127.0.0.1'));
process.on('SIGTERM', () => process.exit(0));
