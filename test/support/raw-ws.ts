// A WebSocket client on a bare TCP socket, for hostile clients: it sends frames as
// fast as the network takes them and reads nothing once the handshake is done.
import { randomBytes } from 'node:crypto';
import net from 'node:net';

/** One masked text frame (clients must mask), ready to write. */
export function textFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const mask = randomBytes(4);
  const length = payload.length;
  const header = length < 126 ? Buffer.from([0x81, 0x80 | length]) : Buffer.alloc(4);
  if (length >= 126) {
    if (length > 0xffff) throw new Error('textFrame: payloads up to 64 KiB only');
    header[0] = 0x81;
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  }
  for (let i = 0; i < length; i++) payload[i] ^= mask[i & 3];
  return Buffer.concat([header, mask, payload]);
}

export interface RawWs {
  socket: net.Socket;
  /** Resolves when the server closed or reset the connection. */
  gone: Promise<void>;
}

/** Opens a socket, completes the upgrade, then stops reading (the kernel buffers fill). */
export async function openRaw(port: number, path = '/'): Promise<RawWs> {
  const socket = net.connect(port, '127.0.0.1');
  const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` + `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let head = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      socket.pause();
      if (head.startsWith('HTTP/1.1 101')) resolve();
      else reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
    };
    socket.on('data', onData);
  });
  return { socket, gone };
}

/**
 * Writes `frame` over and over until `stop()` or the socket is gone: as fast as the socket
 * takes it, or at about `perSecond` frames a second.
 */
export async function flood(raw: RawWs, frame: Buffer, stop: () => boolean, perSecond = 0): Promise<number> {
  let sent = 0;
  let closed = false;
  void raw.gone.then(() => (closed = true));
  const started = Date.now();
  while (!closed && !stop()) {
    if (perSecond > 0 && sent >= ((Date.now() - started) / 1000) * perSecond) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      continue;
    }
    if (raw.socket.write(frame)) {
      sent++;
      if (sent % 256 === 0) await new Promise((resolve) => setImmediate(resolve));
      continue;
    }
    sent++;
    // The server stopped reading: wait for room (or the end), a little at a time to notice stop().
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        raw.socket.off('drain', done);
        resolve();
      };
      const timer = setTimeout(done, 100);
      raw.socket.once('drain', done);
    });
  }
  return sent;
}
