/**
 * The one owner of the notices format: what the Lua scripts publish on an instance's
 * channel (`rm:instance:<id>`) about a user whose sockets that instance holds. The
 * scripts build them with queue/lua/includes/notices.lua; DeliveryService reads them
 * with `parseNotices`. One line per notice, `<kind>|<user>|...`; a PUBLISH may carry
 * several lines joined by '\n' (route.lua sends one per instance per call), which is
 * safe because no field holds a raw newline (ids never do, an envelope is JSON).
 *
 *     m|user|position|envelope   a message newly owed at that position: offered to the user's sockets
 *     a|user|id,id,...           acks taken by another instance: every socket forgets them
 *     s|user                     messages wait in the user's queue: the sockets read again
 *     k|user|conn                a socket replaced past MAX_SOCKETS_PER_USER (already unregistered)
 *     r|user|id                  a message retracted: the sockets that were sent it are told
 *     r|user|id|*                the same for every socket (it was sent to one before them)
 *
 * The envelope is the rest of an `m` line, so it may hold '|'; user, conn and message ids
 * hold neither '|' nor ','.
 */
export type Notice = MessageNotice | AckedNotice | SyncNotice | ReplacedNotice | RetractedNotice;

/** `m|user|position|envelope` */
export interface MessageNotice {
  kind: 'message';
  user: string;
  position: number;
  envelope: string;
}

/** `a|user|id,id,...` */
export interface AckedNotice {
  kind: 'acked';
  user: string;
  ids: string[];
}

/** `s|user` */
export interface SyncNotice {
  kind: 'sync';
  user: string;
}

/** `k|user|conn` */
export interface ReplacedNotice {
  kind: 'replaced';
  user: string;
  conn: string;
}

/** `r|user|id`, or `r|user|id|*` when every socket is told. */
export interface RetractedNotice {
  kind: 'retracted';
  user: string;
  id: string;
  every: boolean;
}

/** The line of a notice, byte for byte what notices.lua builds (for tests: the server only reads notices). */
export function formatNotice(notice: Notice): string {
  switch (notice.kind) {
    case 'message':
      return `m|${notice.user}|${notice.position}|${notice.envelope}`;
    case 'acked':
      return `a|${notice.user}|${notice.ids.join(',')}`;
    case 'sync':
      return `s|${notice.user}`;
    case 'replaced':
      return `k|${notice.user}|${notice.conn}`;
    case 'retracted':
      return `r|${notice.user}|${notice.id}${notice.every ? '|*' : ''}`;
  }
}

/** One PUBLISH carrying these notices (notices.lua's noticeBatch). */
export const formatNotices = (notices: Notice[]): string => notices.map(formatNotice).join('\n');

/** The notices of one PUBLISH on an instance's channel, in order; lines of an unknown kind or malformed are left out. */
export function parseNotices(text: string): Notice[] {
  const out: Notice[] = [];
  for (const line of text.split('\n')) {
    const notice = parseNotice(line);
    if (notice) out.push(notice);
  }
  return out;
}

/**
 * One notice line, or undefined for an unknown kind or a malformed line.
 * Read with indexOf and slices: an `m` line carries a whole envelope, and one is read per message routed elsewhere.
 */
export function parseNotice(line: string): Notice | undefined {
  if (line[1] !== '|') return undefined;
  const userEnd = line.indexOf('|', 2);
  const kind = line[0];
  if (kind === 's') return { kind: 'sync', user: userEnd < 0 ? line.slice(2) : line.slice(2, userEnd) };
  if (userEnd < 0) return undefined;
  const user = line.slice(2, userEnd);
  const rest = line.slice(userEnd + 1);
  switch (kind) {
    case 'm': {
      const positionEnd = rest.indexOf('|');
      const position = positionEnd > 0 ? Number(rest.slice(0, positionEnd)) : NaN;
      return Number.isSafeInteger(position) && position >= 0 ? { kind: 'message', user, position, envelope: rest.slice(positionEnd + 1) } : undefined;
    }
    case 'a':
      return { kind: 'acked', user, ids: rest.split(',') };
    case 'k':
      return { kind: 'replaced', user, conn: rest };
    case 'r': {
      const [id, every] = rest.split('|');
      return { kind: 'retracted', user, id, every: every === '*' };
    }
    default:
      return undefined;
  }
}
