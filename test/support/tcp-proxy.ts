// A TCP proxy between a client and a server that can go silent: it keeps every socket
// open and stops relaying (what arrives is read and dropped), as a cut network does:
// no FIN, no RST, no close frame. Also used to black-hole a connection to Redis.
import net from 'node:net';

export interface TcpProxy {
  /** The port clients connect to. */
  port: number;
  /** Stop relaying in both directions, keeping the connections open. */
  silence(): void;
  /** Relay again (what was dropped meanwhile stays lost). */
  restore(): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let silent = false;
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    track(client);
    track(upstream);
    client.on('data', (chunk) => silent || upstream.write(chunk));
    upstream.on('data', (chunk) => silent || client.write(chunk));
    // A close is relayed only while the network works; a silent one relays nothing.
    client.on('close', () => silent || upstream.destroy());
    upstream.on('close', () => silent || client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    silence: () => (silent = true),
    restore: () => (silent = false),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
