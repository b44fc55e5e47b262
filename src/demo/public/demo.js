// The demo page: one RedMessenger client per page, its messages and state on screen.
// Plain ES module; the SDK comes from the server at /demo/client.js.
import { RedMessengerClient } from '/demo/client.js';

const $ = (id) => document.getElementById(id);
const wsPath = document.querySelector('meta[name="rm-ws-path"]').content;
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${wsPath}`;

let client;
let queuedLeft = 0; // messages of the current ready's backlog still to arrive

/** The demo's only way to send (switch it to POST /v1/messages when that exists). */
async function send(to, payload) {
  const res = await fetch('/demo/messages', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ to, payload }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error([].concat(body.message ?? res.statusText).join('; '));
  return body;
}

function log(text, isError = false) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  if (isError) li.className = 'error';
  $('log').prepend(li);
}

function showState(state) {
  $('state').textContent = state;
  $('state').className = `state ${state}`;
  const running = state !== 'closed';
  $('connect').disabled = running;
  $('user').disabled = running;
  $('disconnect').disabled = !running;
}

function age(ts) {
  const s = Math.max(0, (Date.now() - ts) / 1000);
  return s < 60 ? `${s.toFixed(1)} s ago` : `${Math.round(s / 60)} min ago`;
}

function showMessage(m, queued) {
  const li = document.createElement('li');
  li.dataset.id = m.id;
  li.dataset.ts = String(m.ts);
  const text = document.createElement('span');
  text.className = 'payload';
  text.textContent = m.payload;
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.append(`#${m.id} on ${m.channel}, `);
  const ageEl = document.createElement('span');
  ageEl.className = 'age';
  ageEl.textContent = age(m.ts);
  meta.append(ageEl);
  if (queued) {
    const q = document.createElement('span');
    q.className = 'queued';
    q.textContent = ' (queued while you were away)';
    meta.append(q);
  }
  li.append(text, meta);
  $('messages').prepend(li);
}

// Ages move on while the page is open.
setInterval(() => {
  for (const el of document.querySelectorAll('#messages li')) el.querySelector('.age').textContent = age(Number(el.dataset.ts));
}, 1000);

$('identify').addEventListener('submit', async (event) => {
  event.preventDefault();
  const id = $('user').value.trim();
  client = new RedMessengerClient({ url: wsUrl, id });
  client.on('state', showState);
  client.on('ready', ({ queued, dropped }) => {
    queuedLeft = queued;
    $('ready').textContent = `Connected as ${id}: ${queued} queued${dropped ? `, ${dropped} dropped` : ''}.`;
    log(`ready: ${queued} queued, ${dropped} dropped`);
  });
  client.on('message', (m) => {
    showMessage(m, queuedLeft > 0);
    if (queuedLeft > 0) queuedLeft--;
  }); // returns at once: the SDK acks it
  client.on('error', (e) => log(`${e.code}: ${e.message}`, true));
  try {
    await client.connect();
  } catch (e) {
    $('ready').textContent = `Not connected: ${e.message}`;
  }
});

$('disconnect').addEventListener('click', () => {
  client?.close();
  $('ready').textContent = '';
});

$('send').addEventListener('submit', async (event) => {
  event.preventDefault();
  const to = $('to').value.trim();
  const payload = $('payload').value;
  try {
    const { channel } = await send(to, payload);
    $('sent').textContent = `Sent to ${channel}.`;
    $('payload').value = '';
  } catch (e) {
    $('sent').textContent = `Not sent: ${e.message}`;
  }
});

showState('closed');
window.demoReady = true; // for tests: the module has loaded
