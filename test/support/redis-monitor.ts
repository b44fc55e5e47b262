// MONITOR over a plain socket. ioredis's monitor() can take the first monitored line for the
// reply to a command when it arrives in the same chunk as MONITOR's +OK (its status changes a
// microtask later): "Command queue state error". Here every line after +OK is a command.
import net from 'node:net';

export interface RedisMonitor {
  /** The commands seen so far, each as its first words (e.g. `EVALSHA <sha> 2`). */
  lines: string[];
  close(): void;
}

/** Monitors the Redis at host:port; resolves once Redis answered +OK. Keeps the lines `keep` accepts. */
export function monitorRedis(port: number, keep: (line: string) => boolean, host = '127.0.0.1'): Promise<RedisMonitor> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    const lines: string[] = [];
    let pending = '';
    let ok = false;
    socket.setEncoding('utf8');
    socket.once('error', reject);
    socket.on('connect', () => socket.write('MONITOR\r\n'));
    socket.on('data', (chunk: string) => {
      pending += chunk;
      const parts = pending.split('\r\n');
      pending = parts.pop() ?? '';
      for (const part of parts) {
        if (!ok) {
          if (part !== '+OK') return reject(new Error(`MONITOR answered ${part}`));
          ok = true;
          resolve({ lines, close: () => socket.destroy() });
        } else if (keep(part)) {
          lines.push(part.replace(/^\+[\d.]+ \[[^\]]*\] /, ''));
        }
      }
    });
  });
}
