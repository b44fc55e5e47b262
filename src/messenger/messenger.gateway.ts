import { ArgumentsHost, BeforeApplicationShutdown, Catch, Logger, UseFilters, UseGuards, WsExceptionFilter } from '@nestjs/common';
import { ConnectedSocket, MessageBody, OnGatewayConnection, OnGatewayDisconnect, OnGatewayInit, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import { AuthGuard } from '../auth/auth.guard';
import { TokenLifetime, tokenExpired } from '../auth/token-lifetime';
import { InjectMessengerOptions, MessengerOptions } from '../config/messenger-options';
import { Connection, SocketPolicy } from '../delivery/connection';
import { DeliveryService } from '../delivery/delivery.service';
import { userChannel } from '../protocol/ids';
import { RouterService } from '../router/router.service';
import { CloseCode, ErrorCode, FrameError } from '../protocol/frame-error';
import { clientAddress } from './client-address';
import { AckDto, Frame, IdentifyDto, RefreshDto, VisibilityDto, toAck, toIdentify, toRefresh, toVisibility } from '../protocol/frames';
import { RateLimiter } from './rate-limiter';
import { framesHandled, type FrameScreen } from './messenger-ws.adapter';
import { MetricsService } from '../metrics/metrics.service';
import { identifyOutcomeOf } from '../metrics/metrics.constants';
import { ShutdownState } from '../health/shutdown-state';
import { Heartbeat } from './heartbeat';
import { RateLimitedLog } from '../logging/rate-limited-log';

/** Counts a refusal of a socket that has not reached `ready` as an identify outcome. */
function countRefusal(metrics: MetricsService, conn: Connection, code: string): void {
  const outcome = conn.state !== 'ready' ? identifyOutcomeOf(code) : undefined;
  if (outcome) metrics.identified(outcome);
}

/** Turns what a frame's handler or guard threw into the contract's answer on its socket. */
function answerFailure(metrics: MetricsService, warnings: RateLimitedLog, socket: WebSocket, exception: unknown): void {
  const conn = Connection.of(socket);
  if (!conn) return;
  countRefusal(metrics, conn, exception instanceof FrameError ? exception.code : ErrorCode.Unavailable);
  if (exception instanceof FrameError) return conn.refuse(exception);
  warnings.warn('frame-failed', `Frame from ${conn.remote} failed: ${(exception as Error)?.message ?? exception}`);
  // Redis is unreachable or failing: the client may retry later; nothing was lost.
  conn.refuse(new FrameError(ErrorCode.Unavailable, 'The server cannot reach its storage; try again later', conn.state === 'ready' ? undefined : CloseCode.TryAgainLater));
}

/** The identify's failures (its guard's, its handler's), answered on its socket. */
@Catch()
export class FrameExceptionFilter implements WsExceptionFilter {
  private readonly warnings = new RateLimitedLog(new Logger('MessengerGateway'));

  constructor(private readonly metrics: MetricsService) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    answerFailure(this.metrics, this.warnings, host.switchToWs().getClient<WebSocket>(), exception);
  }
}

/**
 * The WebSocket side of RedMessenger: identify, ack, and the life of a socket.
 * Delivery itself is DeliveryService's; this class keeps the protocol's states.
 */
@WebSocketGateway()
@UseFilters(FrameExceptionFilter)
export class MessengerGateway implements OnGatewayInit, OnGatewayConnection, OnGatewayDisconnect, FrameScreen, BeforeApplicationShutdown {
  private readonly logger = new Logger(MessengerGateway.name);
  /** Refusals a crowd of clients can cause by the thousand: one line a second per kind. */
  private readonly warnings = new RateLimitedLog(this.logger);
  private readonly connections = new Set<Connection>();
  private shuttingDown = false;
  private readonly connectionRate: RateLimiter;
  private readonly identifyRate: RateLimiter;
  private readonly policy: SocketPolicy;
  private readonly heartbeat: Heartbeat;

  constructor(
    private readonly delivery: DeliveryService,
    private readonly router: RouterService,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly metrics: MetricsService,
    private readonly shutdownState: ShutdownState,
    private readonly lifetime: TokenLifetime,
  ) {
    this.connectionRate = new RateLimiter(options.connectionRatePerMinute);
    this.identifyRate = new RateLimiter(options.identifyRatePerMinute);
    this.policy = {
      slowConsumerBytes: options.slowConsumerBytes,
      slowConsumerTimeoutMs: options.slowConsumerTimeoutMs,
      maxFramesPerSecond: options.maxFramesPerSecond,
      drained: (conn) => void this.delivery.pump(conn),
      closedFor: (cause) => metrics.socketClosed(cause),
    };
    this.heartbeat = new Heartbeat(this.connections, options.pingIntervalMs, options.pingTimeoutMs);
  }

  afterInit(): void {
    this.heartbeat.start();
  }

  handleConnection(socket: WebSocket, request: IncomingMessage): void {
    const address = clientAddress(request, this.options.trustedProxies);
    const conn = new Connection(socket, `${address}:${request.socket.remotePort}`, address, this.policy);
    this.metrics.connectionOpened();
    if (this.shuttingDown) return conn.close(CloseCode.ShuttingDown, 'server shutting down');
    if (this.options.maxConnections > 0 && this.connections.size >= this.options.maxConnections) {
      this.warnings.warn('server-full', `Refusing a socket from ${address}: MAX_CONNECTIONS=${this.options.maxConnections} reached`);
      return conn.refuse(new FrameError(ErrorCode.ServerFull, 'This server is full; try another or later', CloseCode.TryAgainLater));
    }
    if (!this.connectionRate.take(address)) {
      this.warnings.warn('connection-rate', `Refusing a socket from ${address}: over CONNECTION_RATE_PER_MINUTE=${this.options.connectionRatePerMinute}`);
      return conn.refuse(new FrameError(ErrorCode.TooManyAttempts, 'Too many connections from your address; slow down', CloseCode.TooManyAttempts));
    }
    this.connections.add(conn);
    // The seed's line, at debug: a busy server accepts thousands of sockets a second.
    if (Logger.isLevelEnabled('debug')) this.logger.debug(`New connection ${conn.remote} on *:${this.options.port}! Waiting for ID...`);
    conn.identifyTimer = setTimeout(() => {
      if (conn.state === 'new') this.refuseConn(conn, new FrameError(ErrorCode.IdentifyTimeout, `No identify within ${this.options.identifyTimeoutMs} ms`, CloseCode.IdentifyTimeout));
    }, this.options.identifyTimeoutMs);
  }

  handleDisconnect(socket: WebSocket): void {
    const conn = Connection.of(socket);
    if (!conn) return;
    this.metrics.connectionClosed();
    if (conn.identified) {
      conn.identified = false;
      this.metrics.unidentified();
    }
    conn.state = 'closed';
    clearTimeout(conn.identifyTimer);
    this.lifetime.stop(socket);
    this.connections.delete(conn);
    framesHandled(socket)
      .then(() => this.delivery.detach(conn))
      .catch((error: Error) => this.logger.error(`${conn.user}: detach failed: ${error.message}`));
  }

  screen(socket: WebSocket, frame: Frame): unknown {
    const conn = Connection.of(socket)!;
    if (frame.event === 'identify') {
      if (conn.state !== 'new') throw new FrameError(ErrorCode.AlreadyIdentified, 'This socket has identified already', CloseCode.BadFrame);
      clearTimeout(conn.identifyTimer);
      conn.identifyTimer = undefined; // an idle identified socket keeps no timer object alive
      if (!this.identifyRate.take(conn.address)) {
        this.warnings.warn('identify-rate', `Refusing an identify from ${conn.address}: over IDENTIFY_RATE_PER_MINUTE=${this.options.identifyRatePerMinute}`);
        throw new FrameError(ErrorCode.TooManyAttempts, 'Too many identify attempts from your address; slow down', CloseCode.TooManyAttempts);
      }
      const dto = toIdentify(frame.data);
      conn.state = 'identifying';
      return dto;
    }
    if (conn.state !== 'ready') throw new FrameError(ErrorCode.NotIdentified, 'The first frame must be identify', CloseCode.BadFrame);
    if (frame.event === 'ack') return toAck(frame.data);
    if (frame.event === 'visibility') return toVisibility(frame.data);
    if (frame.event === 'refresh' && this.lifetime.enabled) return toRefresh(frame.data);
    throw new FrameError(ErrorCode.UnknownEvent, `Unknown event ${JSON.stringify(frame.event.slice(0, 64))}`);
  }

  refuse(socket: WebSocket, error: FrameError): void {
    const conn = Connection.of(socket);
    if (conn) this.refuseConn(conn, error);
  }

  /**
   * The frames of a ready socket (no guard applies to them), handled here rather than through Nest's per-frame
   * composition of guards, pipes and observables: an ack is most of what a busy server reads. Identify goes to Nest.
   */
  dispatch(socket: WebSocket, event: string, data: unknown): Promise<void> | undefined {
    const conn = Connection.of(socket)!;
    if (event === 'ack') return this.delivery.ack(conn, (data as AckDto).ids);
    // Whether the app is in front of the user: absences (`notify`) count only sockets that are not visible.
    if (event === 'visibility') return this.delivery.visibility(conn, (data as VisibilityDto).visible);
    if (event === 'refresh') return this.refresh(conn, (data as RefreshDto).token);
    return undefined;
  }

  fail(socket: WebSocket, error: unknown): void {
    answerFailure(this.metrics, this.warnings, socket, error);
  }

  private refuseConn(conn: Connection, error: FrameError): void {
    countRefusal(this.metrics, conn, error.code);
    conn.refuse(error);
  }

  @SubscribeMessage('identify')
  @UseGuards(AuthGuard)
  async identify(@ConnectedSocket() socket: WebSocket, @MessageBody() { id }: IdentifyDto): Promise<void> {
    const conn = Connection.of(socket)!;
    this.logger.log(`Assigning id ${id} to socket ${conn.remote}`);
    const attached = await this.delivery.attach(conn, id);
    if (attached === undefined || conn.state !== 'identifying') return;
    conn.state = 'ready';
    conn.identified = true;
    this.metrics.identified(attached.replaced > 0 ? 'replaced' : 'ok');
    const channel = userChannel(id);
    const { owed: queued, dropped } = attached;
    conn.send('ready', dropped > 0 ? { id, channel, queued, dropped } : { id, channel, queued });
    // Retracted after they were sent to the user's sockets before this one: the app takes them down.
    const due = conn.retractsDue ?? [];
    conn.retractsDue = undefined;
    for (const retracted of due) conn.send('retract', { id: retracted });
    this.lifetime.start(socket, () => conn.state === 'ready' && conn.closeFor('token_expired', tokenExpired()));
    this.logger.debug(`You're subscribed to ${channel}!`);
    if (dropped > 0) this.logger.warn(`${id}: ${dropped} messages were dropped (queue cap) or expired (queue TTL) since the last identify`);
    if (queued > 0) this.logger.log(`${channel} has ${queued} messages enqueued, purging!`);
    await this.delivery.pump(conn);
  }

  /** AUTH_MODE=jwt: a new token for the same id moves the socket's expiry (TokenLifetime). */
  private async refresh(conn: Connection, token: string): Promise<void> {
    const exp = await this.lifetime.refresh(conn.socket, conn.user!, token);
    if (conn.state === 'ready') conn.send('refreshed', exp === undefined ? {} : { exp });
  }

  /**
   * SIGTERM: stop taking sockets and routing, give every socket's owed messages
   * back to the queue, then close the sockets with 1001. Runs before Nest closes
   * the servers and before Redis is quit.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.shutdownState.begin();
    this.shuttingDown = true;
    this.heartbeat.stop();
    await this.router.stop();
    await Promise.all(
      [...this.connections].map(async (conn) => {
        conn.state = 'closed';
        await this.delivery.detach(conn).catch((error: Error) => this.logger.error(`${conn.user}: detach failed: ${error.message}`));
        conn.close(CloseCode.ShuttingDown, 'server shutting down');
        // Let the close frame reach the client before Nest terminates what is left.
        await new Promise<void>((resolve) => {
          if (conn.socket.readyState === conn.socket.CLOSED) return resolve();
          conn.socket.once('close', () => resolve());
          setTimeout(resolve, 1000).unref();
        });
      }),
    );
  }
}
