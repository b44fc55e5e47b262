'use strict';
// A minimal RESP client that only PUBLISHes, pipelined: far cheaper per message
// than a general client, so the load generator spends its CPU on the sockets.
// PUBLISH answers one integer line, so counting '\n' counts the replies.
const net = require('node:net');

class Publisher {
  constructor(port) {
    this.port = port;
    this.sent = 0;
    this.replies = 0;
    this.errors = 0;
    this.waiters = [];
    this.atLineStart = true;
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.socket = net.connect({ port: this.port, host: '127.0.0.1' }, resolve);
      this.socket.setNoDelay(true);
      this.socket.once('error', reject);
      this.socket.on('data', (buf) => this.onData(buf));
    });
  }

  onData(buf) {
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i];
      if (this.atLineStart && c === 45 /* - */) this.errors++;
      this.atLineStart = c === 10;
      if (c === 10) this.replies++;
    }
    while (this.waiters.length && this.waiters[0].n <= this.replies) this.waiters.shift().resolve();
  }

  /** Writes PUBLISH channel payload for each pair (ASCII strings); resolves once Redis answered them. */
  publish(channels, payloads) {
    let out = '';
    for (let i = 0; i < channels.length; i++) {
      const ch = channels[i];
      const p = payloads[i];
      out += `*3\r\n$7\r\nPUBLISH\r\n$${ch.length}\r\n${ch}\r\n$${p.length}\r\n${p}\r\n`;
    }
    this.socket.write(out);
    this.sent += channels.length;
    const n = this.sent;
    return new Promise((resolve) => {
      if (this.replies >= n) resolve();
      else this.waiters.push({ n, resolve });
    });
  }

  close() {
    this.socket?.destroy();
  }
}

async function connectPublisher(port) {
  const pub = new Publisher(port);
  await pub.connect();
  return pub;
}

module.exports = { connectPublisher };
