// The demo page: one RedMessenger client per page, its messages and state on screen.
// Plain ES module; the SDK comes from the server at /demo/client.js.
import { RedMessengerClient } from '/demo/client.js';

const $ = (id) => document.getElementById(id);
const wsPath = document.querySelector('meta[name="rm-ws-path"]').content;
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${wsPath}`;

let client;
let queuedLeft = 0; // messages of the current ready's backlog still to arrive
/** Messages shown while the page was hidden, not acked yet: id -> what lets the SDK ack it. */
const unread = new Map();

/** The demo's way to send: stored like POST /v1/messages, answered with the message's id. */
async function send(to, payload) {
  const res = await fetch('/demo/messages', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ to, payload }),
  });
  return answer(res);
}

/** Takes a message back for its recipient (as DELETE /v1/messages/<id>?to=<user>): 404 once it was read. */
async function takeBack(id, to) {
  const res = await fetch(`/demo/messages/${encodeURIComponent(id)}?to=${encodeURIComponent(to)}`, { method: 'DELETE' });
  return answer(res);
}

async function answer(res) {
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error([].concat(body.message ?? res.statusText).join('; ')), { status: res.status });
  return body;
}

/** What the SDK tells the server too: the page counts as visible only while it is in front of you. */
const pageVisible = () => document.visibilityState === 'visible';

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

function showVisibility() {
  const visible = pageVisible();
  $('visibility').textContent = visible ? 'visible' : 'hidden';
  $('visibility').className = `visibility ${visible ? 'visible' : 'hidden'}`;
}

/** Resolves when the message has been on a visible page: the SDK acks it then. */
function read(id) {
  if (pageVisible()) return undefined;
  return new Promise((resolve) => unread.set(id, resolve));
}

function markRead(id) {
  unread.get(id)?.();
  unread.delete(id);
  messageElement(id)?.classList.remove('unread');
}

const messageElement = (id) => [...document.querySelectorAll('#messages li')].find((li) => li.dataset.id === id);

function showMessage(m, queued) {
  const li = document.createElement('li');
  li.dataset.id = m.id;
  if (!pageVisible()) li.className = 'unread';
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

/** A sent message, with the button that takes it back from its recipient. */
function showSent(id, to, payload) {
  const li = document.createElement('li');
  li.dataset.id = id;
  const text = document.createElement('span');
  text.className = 'payload';
  text.textContent = payload;
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = `#${id} to ${to} `;
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'take-back';
  button.textContent = 'take back';
  const outcome = document.createElement('span');
  outcome.className = 'outcome';
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const { retracted } = await takeBack(id, to);
      outcome.textContent = retracted === 'queued' ? 'taken back before it reached them' : 'taken back: gone from their screen';
      li.classList.add('retracted');
      button.remove();
    } catch (e) {
      outcome.textContent = e.status === 404 ? 'too late: already read' : `not taken back: ${e.message}`;
      if (e.status === 404) button.remove();
      else button.disabled = false;
    }
  });
  meta.append(button, outcome);
  li.append(text, meta);
  $('sent-messages').prepend(li);
}

document.addEventListener('visibilitychange', () => {
  showVisibility();
  if (pageVisible()) for (const id of [...unread.keys()]) markRead(id);
});

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
    return read(m.id);
  }); // at once on a visible page, else when the page is visible again: the SDK acks it then
  client.on('retract', (id) => {
    // The sender took it back: it goes from the screen (and is no longer waiting to be read).
    markRead(id);
    messageElement(id)?.remove();
    log(`taken back by its sender: #${id}`);
  });
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
    const { channel, id } = await send(to, payload);
    $('sent').textContent = `Sent to ${channel}.`;
    $('payload').value = '';
    showSent(id, to, payload);
  } catch (e) {
    $('sent').textContent = `Not sent: ${e.message}`;
  }
});

showState('closed');
showVisibility();
window.demoReady = true; // for tests: the module has loaded
