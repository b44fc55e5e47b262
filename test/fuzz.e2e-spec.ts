/**
 * Property-based fuzzing of the wire contract (PROTOCOL.md, "Which bad frames are
 * fatal" and point 6): random and mutated frames, each sent on a fresh socket twice,
 * once before identify and once after a valid identify, and checked against the
 * contract's answer as computed by a small reference model (`expectedAnswer`).
 *
 * After every batch: the server process is alive and healthy, a bystander identified
 * at the start still gets a freshly published message, and Redis holds exactly what it
 * held for the users involved (one with 5 queued messages, one with 3 delivered and
 * owed), no key is built from an invalid id, and at the end those messages are all
 * still delivered, in order, with the same ids.
 *
 * Reproduce a failure with the seed it prints: FUZZ_SEED=<seed> npx jest test/fuzz --selectProjects e2e
 * More cases: FUZZ_SCALE=4 (multiplies every batch's numRuns). Every frame sent and its
 * expected answers: FUZZ_LOG=/tmp/fuzz.log. Cap the nesting depth (to look past a known
 * nesting bug): FUZZ_MAX_DEPTH=1000.
 */
import { owedCount } from './support/queue-entries';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { isUtf8 } from 'node:buffer';
import { appendFileSync } from 'node:fs';
import http from 'node:http';
import WebSocket from 'ws';
import { uniqueId } from './support/ids';
import { startRedis, type TestRedis } from './support/redis';
import { startServer, type TestServer } from './support/server';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

const MAX_FRAME_BYTES = 8192;
const SEED = Number(process.env.FUZZ_SEED ?? 1_129_2026);
const SCALE = Math.max(0.05, Number(process.env.FUZZ_SCALE ?? 1));
const runs = (n: number) => Math.max(1, Math.round(n * SCALE));
/** Deepest nesting generated (arrays; objects stop at 1300 to fit): lower it to look past a known nesting bug. */
const MAX_DEPTH = Math.max(1, Number(process.env.FUZZ_MAX_DEPTH ?? 4000));
const WAIT_MS = 3000;
const SHRINK_BUDGET_MS = 15_000;

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
const FATAL_CODES = ['BAD_FRAME', 'INVALID_ID', 'NOT_IDENTIFIED', 'ALREADY_IDENTIFIED', 'UNKNOWN_EVENT'];
const USER_SUFFIXES = ['messages', 'owed', 'state', 'dropped', 'inbox', 'key'];

jest.setTimeout(60_000);

// ---------------------------------------------------------------------------
// What is sent, and what the contract says must come back.

interface FuzzFrame {
  /** What the generator meant, for failure messages. */
  label: string;
  bytes: Buffer;
  binary: boolean;
  /** Byte offsets at which the message is split into WebSocket fragments (empty: one frame). */
  splits: number[];
}

type Answer =
  /** Before ready only: the frame was a valid identify. */
  | { kind: 'ready'; id: string }
  /** An `error` frame with one of these codes, then close 4400. */
  | { kind: 'fatal'; codes: string[]; why: string }
  /** Close 1009; an `error` frame before it is allowed, nothing else. */
  | { kind: 'tooBig' }
  /** After ready only: these `error` frames (none for a good ack), and the socket stays open and served. */
  | { kind: 'open'; codes: string[]; why: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/** The contract's answer to `frame` on a socket that is `new` (before identify) or `ready`. */
function expectedAnswer(frame: FuzzFrame, phase: 'new' | 'ready'): Answer {
  if (frame.bytes.length > MAX_FRAME_BYTES) return { kind: 'tooBig' };
  const fatal = (why: string, codes = ['BAD_FRAME']): Answer => ({ kind: 'fatal', codes, why });
  if (frame.binary) return fatal('binary frame');
  if (!isUtf8(frame.bytes)) return fatal('invalid UTF-8');
  let v: unknown;
  try {
    v = JSON.parse(frame.bytes.toString('utf8'));
  } catch {
    return fatal('not JSON');
  }
  if (!isObject(v) || !has(v, 'event') || typeof v.event !== 'string' || !has(v, 'data') || !isObject(v.data)) {
    return fatal('not the {event: string, data: object} shape');
  }
  const { event, data } = v as { event: string; data: Record<string, unknown> };
  if (phase === 'new') {
    if (event === 'ack') return fatal('ack before ready', ['NOT_IDENTIFIED']);
    if (event !== 'identify') return fatal('unknown event before ready', ['NOT_IDENTIFIED', 'UNKNOWN_EVENT']);
    const idOk = has(data, 'id') && typeof data.id === 'string' && ID_RE.test(data.id);
    const tokenOk = !has(data, 'token') || typeof data.token === 'string';
    if (idOk && tokenOk) return { kind: 'ready', id: data.id as string };
    if (!idOk && tokenOk) return fatal('invalid id', ['INVALID_ID']);
    if (idOk) return fatal('token present and not a string', ['BAD_FRAME']);
    return fatal('invalid id and token not a string', ['INVALID_ID', 'BAD_FRAME']);
  }
  if (event === 'identify') return fatal('second identify', ['ALREADY_IDENTIFIED']);
  if (event === 'ack') {
    const ok = has(data, 'ids') && Array.isArray(data.ids) && data.ids.every((x) => typeof x === 'string');
    return ok ? { kind: 'open', codes: [], why: 'good ack' } : { kind: 'open', codes: ['BAD_ACK'], why: 'bad ack' };
  }
  return { kind: 'open', codes: ['UNKNOWN_EVENT'], why: 'unknown event' };
}

function describeFrame(f: FuzzFrame): string {
  // Runs of one character (nesting, padding) as ⟨c×n⟩, so that a deep or padded frame stays readable.
  const text = f.bytes.toString('utf8').replace(/(.)\1{19,}/gsu, (run, c: string) => `⟨${c}×${run.length / c.length}⟩`);
  const shown = text.length > 400 ? `${JSON.stringify(text.slice(0, 300))}…(+${text.length - 300} chars)` : JSON.stringify(text);
  const hex = f.bytes.length <= 64 && !isUtf8(f.bytes) ? ` hex=${f.bytes.toString('hex')}` : '';
  return `[${f.label}] ${f.bytes.length} bytes${f.binary ? ' BINARY' : ''}${f.splits.length ? ` fragments@${f.splits.join(',')}` : ''}: ${shown}${hex}`;
}

// ---------------------------------------------------------------------------
// A raw socket: sends exactly the bytes, opcode and fragmentation it is given.

interface Received {
  event?: string;
  data?: any;
  raw: string;
}

class FuzzSocket {
  readonly frames: Received[] = [];
  closeInfo?: { code: number; reason: string };
  private error?: Error;
  private readonly wakeups = new Set<() => void>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (raw: Buffer) => {
      const text = raw.toString('utf8');
      let parsed: Received = { raw: text };
      try {
        const v = JSON.parse(text);
        if (isObject(v) && typeof v.event === 'string') parsed = { event: v.event, data: v.data, raw: text };
      } catch {
        // recorded raw
      }
      this.frames.push(parsed);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', (err) => (this.error = err)); // EPIPE after a 1009 and the like; the close follows
  }

  static connect(url: string): Promise<FuzzSocket> {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const sock = new FuzzSocket(ws);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error('no handshake in time')), WAIT_MS);
      const fail = (err: Error) => {
        clearTimeout(timer);
        ws.terminate();
        reject(new Error(`connect failed: ${err.message}`));
      };
      ws.once('open', () => {
        clearTimeout(timer);
        ws.off('error', fail);
        resolve(sock);
      });
      ws.once('error', fail);
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  sendJson(event: string, data: unknown): void {
    this.ws.send(JSON.stringify({ event, data }));
  }

  send(frame: FuzzFrame): void {
    const cuts = [0, ...frame.splits, frame.bytes.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      this.ws.send(frame.bytes.subarray(cuts[i], cuts[i + 1]), { binary: frame.binary, fin: i + 2 === cuts.length, compress: false });
    }
  }

  waitUntil<T>(what: string, check: () => T | undefined, failOnClose = true, ms = WAIT_MS): Promise<T> {
    return new Promise((resolve, reject) => {
      const finish = (err?: Error, value?: T) => {
        clearTimeout(timer);
        this.wakeups.delete(attempt);
        if (err) reject(err);
        else resolve(value as T);
      };
      const attempt = () => {
        const value = check();
        if (value !== undefined) finish(undefined, value);
        else if (failOnClose && this.closeInfo) finish(new Error(`socket closed while waiting for ${what}; ${this.describe()}`));
      };
      const timer = setTimeout(() => finish(new Error(`timed out after ${ms} ms waiting for ${what}; ${this.describe()}`)), ms);
      this.wakeups.add(attempt);
      attempt();
    });
  }

  closed(): Promise<{ code: number; reason: string }> {
    return this.waitUntil('the close', () => this.closeInfo, false);
  }

  async close(): Promise<void> {
    if (this.closeInfo) return;
    this.ws.close(1000);
    await this.closed().catch(() => this.ws.terminate());
  }

  terminate(): void {
    this.ws.terminate();
  }

  describe(): string {
    const frames = this.frames.map((f) => (f.raw.length > 200 ? `${f.raw.slice(0, 200)}…` : f.raw));
    const state = this.closeInfo ? `closed ${this.closeInfo.code} ${JSON.stringify(this.closeInfo.reason)}` : this.isOpen ? 'open' : 'not open';
    return `received [${frames.join(', ')}], socket ${state}${this.error ? `, last error ${this.error.message}` : ''}`;
  }

  private wake(): void {
    for (const w of [...this.wakeups]) w();
  }
}

// ---------------------------------------------------------------------------
// Generators. Frames are built as JSON text (not values) so that they can hold what
// JSON.stringify never writes: 1e400, duplicate keys, deep nesting, broken syntax.

const ALNUM = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'];
const ID_REST = [...ALNUM, '.', '_', '@', '-'];
const FORBIDDEN = [
  '*',
  '?',
  '[',
  ']',
  ':',
  ' ',
  '\t',
  '\n',
  '\r',
  '\0',
  '/',
  '\\',
  '"',
  "'",
  '{',
  '}',
  '#',
  '$',
  '%',
  '^',
  '&',
  '(',
  ')',
  '+',
  '=',
  ',',
  ';',
  '<',
  '>',
  '|',
  '~',
  '`',
  '!',
  'é',
  'ß',
  'а' /* Cyrillic */,
  'Ａ' /* fullwidth */,
  '٣',
  '\u200b',
  '\ufeff',
  '\u2028',
  '😀',
  '\ud800' /* lone surrogate */,
  '\x7f',
];
const HUGE_NUMBERS = [
  '1e400',
  '-1e400',
  '1e-400',
  '1.7976931348623157e308',
  '9007199254740993',
  '-9007199254740993',
  '123456789012345678901234567890123456789',
  '-0',
  '0.0000000000000000000001',
  '1E+2',
  '4e9999999999',
];
const UNKNOWN_EVENTS = [
  'Identify',
  'IDENTIFY',
  'identify ',
  ' identify',
  'identify\u0000',
  'ack ',
  'Ack',
  'ACK',
  'acks',
  'message',
  'ready',
  'error',
  'subscribe',
  'publish',
  'ping',
  'close',
  '',
  ' ',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'then',
  'identify\u200b',
  'ідентифікувати',
  '😀',
  'x'.repeat(4000),
];

const j = (v: unknown) => JSON.stringify(v);
/** `{"k": raw, ...}` from already-encoded values. */
const obj = (entries: Array<[string, string]>) => `{${entries.map(([k, v]) => `${j(k)}:${v}`).join(',')}}`;
const text = (label: string, s: string, binary = false): FuzzFrame => ({ label, bytes: Buffer.from(s, 'utf8'), binary, splits: [] });

const validIdOfLength = (len: number) => fc.tuple(fc.constantFrom(...ALNUM), fc.string({ unit: fc.constantFrom(...ID_REST), minLength: len - 1, maxLength: len - 1 })).map(([a, b]) => a + b);
const validId = fc.oneof({ arbitrary: fc.integer({ min: 1, max: 128 }).chain(validIdOfLength), weight: 3 }, { arbitrary: fc.constantFrom(1, 127, 128).chain(validIdOfLength), weight: 2 });
const invalidId = fc.oneof(
  fc.constantFrom(129, 130, 256, 4000).chain(validIdOfLength),
  fc.constant(''),
  // a valid id of at most 127 characters with one forbidden character at the start, middle or end
  fc
    .tuple(fc.integer({ min: 1, max: 127 }).chain(validIdOfLength), fc.constantFrom(...FORBIDDEN), fc.constantFrom('start', 'middle', 'end'))
    .map(([id, c, where]) => (where === 'start' ? c + id : where === 'end' ? id + c : id.slice(0, id.length >> 1) + c + id.slice(id.length >> 1))),
  // every forbidden character, alone
  fc.constantFrom(...FORBIDDEN),
  // a first character that is only allowed later
  fc.tuple(fc.constantFrom('.', '_', '@', '-'), fc.integer({ min: 1, max: 127 }).chain(validIdOfLength)).map(([a, b]) => a + b),
  fc.constantFrom('rm:users:x', 'x:messages', '../x', '*', 'a*', 'a?b', '[a-z]', 'a b', 'user\n', '\nuser', 'ok\r\n'),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).filter((s) => !ID_RE.test(s)),
);
const anyJson = (maxDepth = 2) => fc.jsonValue({ maxDepth }).map(j);
const nonStringRaw = fc.oneof(
  fc.constantFrom('null', 'true', 'false', '0', '1', '-1', '[]', '{}', '[""]', '["a"]', '{"id":"a"}', '1.5', ...HUGE_NUMBERS),
  anyJson(2).filter((s) => !s.startsWith('"')),
);
const idRaw = fc.oneof({ arbitrary: validId.map(j), weight: 3 }, { arbitrary: invalidId.map(j), weight: 5 }, { arbitrary: nonStringRaw, weight: 2 });
const tokenRaw = fc.option(
  fc.oneof(
    { arbitrary: fc.string({ maxLength: 60 }).map(j), weight: 3 },
    { arbitrary: fc.constantFrom('""', j('x'.repeat(3000)), j('\ud800'), j('eyJhbGciOiJub25lIn0.e30.')), weight: 1 },
    { arbitrary: nonStringRaw, weight: 3 },
  ),
  { nil: undefined, freq: 3 },
);
/** Extra keys in `data` or in the frame: allowed by the contract, and a place for hostile values. */
const extraEntries = fc.array(fc.tuple(fc.constantFrom('extra', 'x', '', '__proto__', 'constructor', 'prototype', 'length', 'ids', 'id'), anyJson(2)), { maxLength: 2 });

function identifyFrame(): fc.Arbitrary<FuzzFrame> {
  return fc.tuple(idRaw, tokenRaw, extraEntries, fc.boolean()).map(([id, token, extras, idFirst]) => {
    const entries: Array<[string, string]> = [['id', id]];
    if (token !== undefined) entries.push(['token', token]);
    if (!idFirst) entries.reverse();
    return text(
      'identify',
      obj([
        ['event', j('identify')],
        ['data', obj([...entries, ...extras])],
      ]),
    );
  });
}

function ackFrame(knownIds: () => string[]): fc.Arbitrary<FuzzFrame> {
  const oddId = fc.oneof(
    { arbitrary: fc.constantFrom('', '0', '-1', '1e3', '01', ' 1', '1 ', '9'.repeat(30), 'NaN', 'Infinity', '*', '?', '[a]', 'rm:seq', '\u0000', '\ud800', 'x'.repeat(500)), weight: 3 },
    { arbitrary: fc.nat({ max: 100000 }).map(String), weight: 3 },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 20 }), weight: 2 },
    // ids of other users' queued and owed messages: acking them from here must change nothing
    { arbitrary: fc.constant(null).chain(() => fc.constantFrom(...knownIds())), weight: 4 },
  );
  const goodIds = fc.array(oddId, { maxLength: 12 }).map(j);
  const badIds = fc.oneof(
    fc
      .array(fc.oneof(oddId.map(j), nonStringRaw), { minLength: 1, maxLength: 6 })
      .filter((items) => items.some((s) => !s.startsWith('"')))
      .map((items) => `[${items.join(',')}]`),
    nonStringRaw.filter((s) => !s.startsWith('[')),
    fc.constantFrom('{"0":"1","length":1}', '"1,2,3"', '[["1"]]', '[null]', '[1,2]', ...HUGE_NUMBERS.map((n) => `[${n}]`)),
  );
  const idsRaw = fc.option(fc.oneof(goodIds, badIds), { nil: undefined, freq: 8 });
  return fc.tuple(idsRaw, extraEntries).map(([ids, extras]) =>
    text(
      'ack',
      obj([
        ['event', j('ack')],
        ['data', obj([...(ids === undefined ? [] : ([['ids', ids]] as Array<[string, string]>)), ...extras])],
      ]),
    ),
  );
}

function structureFrame(): fc.Arbitrary<FuzzFrame> {
  const eventRaw = fc.oneof(
    { arbitrary: fc.constantFrom('identify', 'ack').map(j), weight: 3 },
    { arbitrary: fc.constantFrom(...UNKNOWN_EVENTS).map(j), weight: 3 },
    { arbitrary: fc.string({ maxLength: 20 }).map(j), weight: 1 },
    { arbitrary: nonStringRaw, weight: 3 },
  );
  const dataRaw = fc.oneof(
    { arbitrary: fc.constantFrom('{}', '{"id":"fuzzer"}', '{"ids":["1"]}', '{"ids":[]}'), weight: 3 },
    { arbitrary: fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }).map(j), weight: 2 },
    { arbitrary: nonStringRaw, weight: 3 },
    { arbitrary: fc.string({ maxLength: 10 }).map(j), weight: 1 },
  );
  const shaped = fc.tuple(fc.option(eventRaw, { nil: undefined, freq: 8 }), fc.option(dataRaw, { nil: undefined, freq: 8 }), extraEntries, fc.boolean()).map(([e, d, extras, swap]) => {
    const entries: Array<[string, string]> = [];
    if (e !== undefined) entries.push(['event', e]);
    if (d !== undefined) entries.push(['data', d]);
    if (swap) entries.reverse();
    return text('shape', obj([...entries, ...extras]));
  });
  const notJson = fc
    .oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom(
        '',
        ' ',
        'null',
        'true',
        '1',
        '"identify"',
        '[]',
        '{}',
        'undefined',
        'NaN',
        "{'event':'identify','data':{}}",
        '{event:"identify",data:{}}',
        '{"event":"identify","data":{"id":"a"},}',
        '{"event":"identify","data":{"id":"a"}}garbage',
        '{"event":"identify","data":{"id":"a"}}{"event":"ack","data":{"ids":[]}}',
        '[{"event":"identify","data":{"id":"a"}}]',
        '{"event":"identify","data":{"id":"a"',
        '{"event":"identify","data":{"id":"a"}}\n',
        ' \t{"event":"identify","data":{"id":"a"}} ',
        '\ufeff{"event":"identify","data":{"id":"a"}}',
        '{"event":"identify","data":{"id":"a"}}\u0000',
        '/*c*/{"event":"ack","data":{}}',
        '{"event":"identify","event":"ack","data":{"ids":[]}}',
        '{"event":"identify","data":{"id":"a"},"data":[]}',
      ),
    )
    .map((s) => text('not-json-or-odd', s));
  const topLevel = fc.jsonValue({ maxDepth: 3 }).map((v) => text('json-value', j(v)));
  return fc.oneof({ arbitrary: shaped, weight: 4 }, { arbitrary: notJson, weight: 3 }, { arbitrary: topLevel, weight: 1 });
}

function hostileFrame(knownIds: () => string[]): fc.Arbitrary<FuzzFrame> {
  const nestArray = (d: number) => '['.repeat(d) + ']'.repeat(d);
  const nestObject = (d: number) => '{"a":'.repeat(d) + '1' + '}'.repeat(d);
  // Arrays nest in 2 bytes a level, so up to ~4000 levels fit in MAX_FRAME_BYTES; objects in 6, up to ~1300.
  const depth = fc.oneof(fc.constantFrom(10, 100, 500, 1000, 1300), fc.integer({ min: 1, max: 4000 }), fc.constantFrom(1400, 1500, 2000, 3000, 4000)).map((d) => Math.min(d, MAX_DEPTH));
  const deep = fc.tuple(depth, fc.integer({ min: 0, max: 3 })).map(([d, kind]) => (kind > 0 ? nestArray(d) : nestObject(Math.min(d, 1300))));
  const slot = fc.constantFrom('identify.id', 'identify.token', 'identify.extra', 'ack.ids', 'ack.ids[0]', 'ack.extra', 'unknown.data', 'data', 'event', 'extra');
  const place = (where: string, v: string): string => {
    switch (where) {
      case 'identify.id':
        return obj([
          ['event', j('identify')],
          ['data', obj([['id', v]])],
        ]);
      case 'identify.token':
        return obj([
          ['event', j('identify')],
          [
            'data',
            obj([
              ['id', j('fuzzer')],
              ['token', v],
            ]),
          ],
        ]);
      case 'identify.extra':
        return obj([
          ['event', j('identify')],
          [
            'data',
            obj([
              ['id', j('fuzzer')],
              ['extra', v],
            ]),
          ],
        ]);
      case 'ack.ids':
        return obj([
          ['event', j('ack')],
          ['data', obj([['ids', v]])],
        ]);
      case 'ack.ids[0]':
        return obj([
          ['event', j('ack')],
          ['data', obj([['ids', `[${v}]`]])],
        ]);
      case 'ack.extra':
        return obj([
          ['event', j('ack')],
          [
            'data',
            obj([
              ['ids', '[]'],
              ['extra', v],
            ]),
          ],
        ]);
      case 'unknown.data':
        return obj([
          ['event', j('fz.unknown')],
          ['data', obj([['x', v]])],
        ]);
      case 'data':
        return obj([
          ['event', j('identify')],
          ['data', v],
        ]);
      case 'event':
        return obj([
          ['event', v],
          ['data', '{}'],
        ]);
      default:
        return obj([
          ['event', j('ack')],
          ['data', obj([['ids', '[]']])],
          ['extra', v],
        ]);
    }
  };
  const hugeNumber = fc.constantFrom(...HUGE_NUMBERS);
  const protoData = fc
    .constantFrom(
      '{"id":"fuzzer","__proto__":{"token":5}}',
      '{"__proto__":{"id":"fuzzer"}}',
      '{"id":"fuzzer","constructor":{"prototype":{"token":5}}}',
      '{"__proto__":{"ids":["1"]}}',
      '{"ids":["1"],"__proto__":[]}',
      '{"id":"fuzzer","token":"t","__proto__":null}',
    )
    .chain((d) =>
      fc.constantFrom('identify', 'ack').map((e) =>
        obj([
          ['event', j(e)],
          ['data', d],
        ]),
      ),
    );
  const wide = fc
    .constantFrom(
      () =>
        obj([
          ['event', j('ack')],
          ['data', obj([['ids', j(Array.from({ length: 1500 }, (_, i) => String(i)))]])],
        ]),
      () =>
        obj([
          ['event', j('identify')],
          ['data', obj([['id', j('fuzzer')], ...Array.from({ length: 600 }, (_, i) => [`k${i}`, '0'] as [string, string])])],
        ]),
      () =>
        obj([
          ['event', j('ack')],
          ['data', obj([['ids', j(Array.from({ length: 2000 }, () => ''))]])],
        ]),
      () =>
        obj([
          ['event', j('x'.repeat(8000))],
          ['data', '{}'],
        ]),
      () =>
        obj([
          ['event', j('ack')],
          ['data', obj([['ids', j(knownIds().concat(knownIds(), knownIds()))]])],
        ]),
    )
    .map((f) => f());
  return fc.oneof(
    { arbitrary: fc.tuple(slot, deep).map(([s, v]) => text(`deep@${s}`, place(s, v))), weight: 6 },
    { arbitrary: fc.tuple(slot, hugeNumber).map(([s, v]) => text(`number@${s}`, place(s, v))), weight: 2 },
    { arbitrary: protoData.map((s) => text('proto-keys', s)), weight: 2 },
    { arbitrary: wide.map((s) => text('wide', s)), weight: 1 },
    { arbitrary: fc.tuple(slot, fc.string({ unit: 'binary', maxLength: 30 }).map(j)).map(([s, v]) => text(`unicode@${s}`, place(s, v))), weight: 2 },
  );
}

/** A small pool of well-formed frames to corrupt, pad or re-encode. */
function baseFrameText(knownIds: () => string[]): fc.Arbitrary<string> {
  return fc.oneof(
    fc.tuple(validId, fc.option(fc.string({ maxLength: 20 }), { nil: undefined })).map(([id, token]) => j({ event: 'identify', data: token === undefined ? { id } : { id, token } })),
    fc
      .array(
        fc.oneof(
          fc.nat({ max: 10000 }).map(String),
          fc.constant(null).chain(() => fc.constantFrom(...knownIds())),
        ),
        { maxLength: 5 },
      )
      .map((ids) => j({ event: 'ack', data: { ids } })),
    fc.constantFrom(...UNKNOWN_EVENTS.slice(0, 12)).map((event) => j({ event, data: { note: 'zß😀€' } })),
    fc.constantFrom(j({ event: 'ack', data: { ids: [1] } }), j({ event: 'ack', data: {} }), j({ event: 'identify', data: { id: 'ünïcode' } })),
  );
}

const splitsFor = (len: number) =>
  fc.oneof(
    { arbitrary: fc.constant([] as number[]), weight: 3 },
    { arbitrary: fc.uniqueArray(fc.integer({ min: 0, max: Math.max(0, len) }), { minLength: 1, maxLength: 3 }).map((a) => a.sort((x, y) => x - y)), weight: 1 },
  );

const INVALID_UTF8 = [
  [0xff],
  [0xfe],
  [0x80],
  [0xbf],
  [0xc0, 0x80] /* overlong NUL */,
  [0xc1, 0xbf],
  [0xe0, 0x80, 0x80],
  [0xed, 0xa0, 0x80] /* surrogate */,
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80] /* > U+10FFFF */,
  [0xf5, 0x80, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xc3] /* truncated */,
  [0xe2, 0x82] /* truncated € */,
  [0xf0, 0x9f, 0x98] /* truncated emoji */,
  [0xc3, 0x28],
  [0xe2, 0x28, 0xa1],
].map((b) => Buffer.from(b));

function encodingFrame(knownIds: () => string[]): fc.Arbitrary<FuzzFrame> {
  const base = baseFrameText(knownIds);
  const withSplits = (f: FuzzFrame) => splitsFor(f.bytes.length).map((splits) => ({ ...f, splits }));
  const variants: fc.Arbitrary<FuzzFrame> = fc.oneof<fc.Arbitrary<FuzzFrame>[]>(
    // the same, well-formed frame as a binary frame
    base.map((s) => text('binary', s, true)),
    // invalid UTF-8 somewhere in a frame that would otherwise be fine (inside a string value, or anywhere)
    fc.tuple(base, fc.constantFrom(...INVALID_UTF8), fc.nat(), fc.boolean()).map(([s, bad, at, inString]) => {
      const b = Buffer.from(s, 'utf8');
      let pos = at % (b.length + 1);
      if (inString) {
        const quotes = [...b.keys()].filter((i) => b[i] === 0x22);
        pos = quotes.length > 1 ? quotes[(at % (quotes.length - 1)) + 1] : pos; // right before a closing-ish quote
      }
      return { label: `invalid-utf8@${pos}`, bytes: Buffer.concat([b.subarray(0, pos), bad, b.subarray(pos)]), binary: false, splits: [] };
    }),
    // well-formed multi-byte text, to be split across fragments (possibly inside a character)
    base.map((s) => text('multibyte', s)),
    fc.constantFrom({ label: 'empty text', bytes: Buffer.alloc(0), binary: false, splits: [] }, { label: 'empty binary', bytes: Buffer.alloc(0), binary: true, splits: [] }),
    base.map((s) => ({ label: 'utf16le', bytes: Buffer.from(s, 'utf16le'), binary: false, splits: [] })),
    base.map((s) => ({ label: 'bom', bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(s)]), binary: false, splits: [] })),
    base.map((s) => ({ label: 'latin1', bytes: Buffer.from(s, 'latin1'), binary: false, splits: [] })),
    fc.uint8Array({ minLength: 1, maxLength: 64 }).chain((u) => fc.boolean().map((binary) => ({ label: 'random bytes', bytes: Buffer.from(u), binary, splits: [] }))),
  );
  return variants.chain(withSplits);
}

function sizedFrame(knownIds: () => string[]): fc.Arbitrary<FuzzFrame> {
  const target = fc.oneof(
    { arbitrary: fc.integer({ min: MAX_FRAME_BYTES - 3, max: MAX_FRAME_BYTES + 3 }), weight: 6 },
    { arbitrary: fc.integer({ min: MAX_FRAME_BYTES + 4, max: 64 * 1024 }), weight: 2 },
    { arbitrary: fc.integer({ min: 6000, max: MAX_FRAME_BYTES - 4 }), weight: 1 },
    { arbitrary: fc.constant(1 << 20), weight: 1 },
  );
  const kind = fc.constantFrom('identify', 'ack', 'bad-ack', 'unknown', 'bad-id');
  const pad = fc.constantFrom('ascii', 'whitespace', 'multibyte', 'ids');
  return fc.tuple(kind, target, pad, validId, fc.boolean(), fc.integer({ min: 0, max: 19 })).chain(([k, size, how, id, binary, binaryDie]) => {
    const event = k === 'identify' || k === 'bad-id' ? 'identify' : k === 'unknown' ? 'fz.sized' : 'ack';
    const dataBase: Record<string, unknown> = k === 'identify' ? { id } : k === 'bad-id' ? { id: `${id}*` } : k === 'ack' ? { ids: knownIds().slice(0, 2) } : k === 'bad-ack' ? { ids: [1] } : { n: 1 };
    let s: string;
    if (how === 'whitespace') {
      const core = j({ event, data: dataBase });
      s = `{${' '.repeat(Math.max(0, size - Buffer.byteLength(core)))}${core.slice(1)}`;
    } else if (how === 'ids' && event === 'ack') {
      // one string id long enough to fill the frame
      const core = j({ event, data: { ids: [...(dataBase.ids as unknown[]), ''] } });
      const fill = Math.max(0, size - Buffer.byteLength(core));
      s = j({ event, data: { ids: [...(dataBase.ids as unknown[]), 'x'.repeat(fill)] } });
    } else {
      const core = j({ event, data: { ...dataBase, pad: '' } });
      const fill = Math.max(0, size - Buffer.byteLength(core));
      const padding = how === 'multibyte' ? '€'.repeat(Math.floor(fill / 3)) + 'x'.repeat(fill % 3) : 'x'.repeat(fill);
      s = j({ event, data: { ...dataBase, pad: padding } });
    }
    const bytes = Buffer.from(s, 'utf8');
    const frame: FuzzFrame = { label: `sized ${k}/${how} target ${size}`, bytes, binary: binary && binaryDie === 0, splits: [] };
    return splitsFor(bytes.length).map((splits) => ({ ...frame, splits }));
  });
}

function mutatedFrame(knownIds: () => string[]): fc.Arbitrary<FuzzFrame> {
  const specialByte = fc.constantFrom(...[...'{}[]":,\\0a -e.'].map((c) => c.charCodeAt(0)), 0x00, 0x0a, 0x7f, 0x80, 0xbf, 0xc0, 0xc3, 0xe2, 0xed, 0xf0, 0xf4, 0xff);
  const byte = fc.oneof(specialByte, fc.integer({ min: 0, max: 255 }));
  const op = fc.oneof(
    fc.tuple(fc.constant('truncate' as const), fc.nat(), fc.constant(0)),
    fc.tuple(fc.constant('delete' as const), fc.nat(), fc.constant(0)),
    fc.tuple(fc.constant('insert' as const), fc.nat(), byte),
    fc.tuple(fc.constant('replace' as const), fc.nat(), byte),
    fc.tuple(fc.constant('duplicate' as const), fc.nat(), fc.integer({ min: 1, max: 16 })),
  );
  return fc.tuple(baseFrameText(knownIds), fc.array(op, { minLength: 1, maxLength: 4 }), fc.integer({ min: 0, max: 9 })).chain(([s, ops, binaryDie]) => {
    let b = Buffer.from(s, 'utf8');
    const done: string[] = [];
    for (const [kind, at, arg] of ops) {
      const pos = b.length === 0 ? 0 : at % (b.length + (kind === 'insert' ? 1 : 0));
      if (kind === 'truncate') b = b.subarray(0, pos);
      else if (kind === 'delete') b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + 1)]);
      else if (kind === 'insert') b = Buffer.concat([b.subarray(0, pos), Buffer.from([arg]), b.subarray(pos)]);
      else if (kind === 'replace' && b.length > 0) b = Buffer.concat([b.subarray(0, pos), Buffer.from([arg]), b.subarray(pos + 1)]);
      else if (kind === 'duplicate') b = Buffer.concat([b.subarray(0, pos + arg), b.subarray(pos, pos + arg), b.subarray(pos + arg)]);
      done.push(`${kind}@${pos}${kind === 'insert' || kind === 'replace' ? `=0x${arg.toString(16)}` : ''}`);
    }
    const frame: FuzzFrame = { label: `mutated ${done.join(' ')}`, bytes: b, binary: binaryDie === 0, splits: [] };
    return splitsFor(b.length).map((splits) => ({ ...frame, splits }));
  });
}

// ---------------------------------------------------------------------------
// The suite.

interface World {
  bystanderId: string;
  bystander: TestClient;
  /** Offline, 5 messages queued (4 published, 1 raw RPUSH). */
  queuedUser: string;
  queuedPayloads: string[];
  queuedIds: string[];
  /** Online through `owedClient`, 3 messages delivered and not acked. */
  owedUser: string;
  owedClient: TestClient;
  owedIds: string[];
}

type Snapshot = Record<string, unknown>;

describe('fuzz: random and mutated frames against the wire contract', () => {
  let redis: TestRedis;
  let admin: Redis;
  let server: TestServer;
  let serverDown = false;
  let world: World;
  let before: Snapshot;
  const invalidIdsSeen = new Set<string>();
  const totals = { frames: 0, cases: 0, byAnswer: {} as Record<string, number> };
  const batchCounts: Array<[string, number]> = [];

  const watchServer = () => {
    serverDown = false;
    void server.exited().then(() => (serverDown = true));
  };

  const buildWorld = async (): Promise<World> => {
    const bystanderId = uniqueId('fz-bystander');
    const bystander = await TestClient.connect(server.wsUrl, { autoAck: true });
    await bystander.identify(bystanderId);

    const queuedUser = uniqueId('fz-queued');
    const queuedPayloads = ['q1', 'q2 ünï', 'q3 {"rm":"not an envelope"}', 'q4'];
    for (const p of queuedPayloads) await admin.publish(`rm.users.${queuedUser}`, p);
    await waitFor(async () => (await admin.llen(`rm:users:${queuedUser}:messages`)) === 4, 5000, 'the 4 published messages to be queued');
    await admin.rpush(`rm:users:${queuedUser}:messages`, 'q5 raw entry');
    queuedPayloads.push('q5 raw entry');
    const queuedIds = (await admin.lrange(`rm:users:${queuedUser}:messages`, 0, -1)).flatMap((e) => {
      try {
        const id = JSON.parse(e)?.rm?.id;
        return typeof id === 'string' ? [id] : [];
      } catch {
        return [];
      }
    });

    const owedUser = uniqueId('fz-owed');
    const owedClient = await TestClient.connect(server.wsUrl);
    await owedClient.identify(owedUser);
    for (const p of ['o1', 'o2', 'o3']) await admin.publish(`rm.users.${owedUser}`, p);
    const owedIds = (await owedClient.messages(3)).map((f) => f.data.id as string);
    await waitFor(async () => (await owedCount(admin, owedUser)) === 3, 5000, 'the 3 delivered messages to be owed');
    return { bystanderId, bystander, queuedUser, queuedPayloads, queuedIds, owedUser, owedClient, owedIds };
  };

  const knownIds = () => {
    const ids = [...world.owedIds, ...world.queuedIds];
    return ids.length ? ids : ['0'];
  };
  /** Set by the last test, which consumes the queued and owed messages on purpose. */
  let consumed = false;

  /** Exact keys of the users involved (never a pattern built from input) and their contents. */
  const snapshot = async (): Promise<Snapshot> => {
    const out: Snapshot = {};
    for (const user of [world.queuedUser, world.owedUser]) {
      for (const suffix of USER_SUFFIXES) {
        const key = `rm:users:${user}:${suffix}`;
        const type = await admin.type(key);
        let value: unknown = null;
        if (type === 'list') value = await admin.lrange(key, 0, -1);
        else if (type === 'zset') value = await admin.zrange(key, 0, -1, 'WITHSCORES');
        else if (type === 'hash') value = Object.entries(await admin.hgetall(key)).sort();
        else if (type === 'set') value = (await admin.smembers(key)).sort();
        else if (type === 'string') value = await admin.get(key);
        else if (type !== 'none') value = `(unexpected type ${type})`;
        const pttl = await admin.pttl(key);
        out[key] = { type, value, expires: pttl > 0 ? 'yes' : pttl };
      }
      out[`rm:queues ${user}`] = await admin.zscore('rm:queues', user).catch(() => '(not a zset)');
    }
    return out;
  };

  const healthy = () =>
    new Promise<boolean>((resolve) => {
      const req = http.get(`${server.url}/health`, { timeout: 2000, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
    });

  beforeAll(async () => {
    redis = await startRedis();
    admin = redis.client();
    server = await startServer({
      REDIS_URL: redis.url,
      MAX_FRAME_BYTES: String(MAX_FRAME_BYTES),
      LOG_LEVEL: 'log',
      // thousands of sockets from 127.0.0.1 in a few seconds: the rate limits are not what is tested here
      CONNECTION_RATE_PER_MINUTE: '0',
      IDENTIFY_RATE_PER_MINUTE: '0',
    });
    watchServer();
    world = await buildWorld();
  });

  beforeEach(async () => {
    if (serverDown) {
      // A batch killed the server (and failed for it): give the next batch a live one.
      await server.restart();
      watchServer();
      world.bystander.terminate();
      world.owedClient.terminate();
      world = await buildWorld();
    }
    before = await snapshot();
  });

  afterEach(async () => {
    if (!server || !world) return; // beforeAll failed: jest reports that
    const problems: string[] = [];
    if (serverDown) {
      problems.push(`the server process died; last logs:\n${server.logs().slice(-3000)}`);
    } else {
      if (!(await healthy())) problems.push('GET /health is not 200');
      const payload = uniqueId('fz-still-served');
      try {
        await admin.publish(`rm.users.${world.bystanderId}`, payload);
        await world.bystander.next((f) => f.event === 'message' && f.data.payload === payload, WAIT_MS);
      } catch (err) {
        problems.push(`the bystander did not get a fresh message: ${(err as Error).message}`);
      }
      if (!consumed && !world.owedClient.isOpen) problems.push('the socket of the user with owed messages was closed');
    }
    if (!consumed) {
      const after = await snapshot();
      try {
        expect(after).toEqual(before);
      } catch (err) {
        problems.push(`Redis changed for the users involved:\n${(err as Error).message}`);
      }
    }
    // No key is ever built from an invalid id: exact keys for the ids we sent...
    const invalid = [...invalidIdsSeen];
    invalidIdsSeen.clear();
    for (let i = 0; i < invalid.length; i += 200) {
      const keys = invalid.slice(i, i + 200).flatMap((id) => USER_SUFFIXES.map((s) => `rm:users:${id}:${s}`));
      const n = await admin.exists(...keys);
      if (n !== 0) problems.push(`${n} key(s) exist for invalid ids among ${JSON.stringify(invalid.slice(i, i + 200)).slice(0, 500)}`);
    }
    // ...and a full SCAN (no pattern) to see that every per-user key carries a valid id.
    const bad: string[] = [];
    let cursor = '0';
    let rounds = 0;
    do {
      const [next, keys] = await admin.scan(cursor, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const m = /^rm:(users|channels):(.*)$/s.exec(key);
        if (!m) continue;
        const id = m[2].split(':')[0];
        if (!ID_RE.test(id)) bad.push(key);
      }
    } while (cursor !== '0' && ++rounds < 10_000);
    if (bad.length) problems.push(`keys built from invalid ids: ${JSON.stringify(bad.slice(0, 20))}`);
    if (problems.length) throw new Error(`After the batch:\n- ${problems.join('\n- ')}`);
  });

  afterAll(async () => {
    const by = Object.entries(totals.byAnswer)
      .map(([k, n]) => `${k}=${n}`)
      .join(', ');
    console.log(
      `fuzz: ${totals.cases} cases (${totals.frames} frames, each before identify and after ready) with FUZZ_SEED=${SEED}, FUZZ_SCALE=${SCALE}\n` +
        `  by expected answer: ${by}\n  by batch: ${batchCounts.map(([b, n]) => `${b}=${n}`).join(', ')}`,
    );
    world?.bystander.terminate();
    world?.owedClient.terminate();
    await server?.stop();
    await redis?.close();
  });

  // -------------------------------------------------------------------------
  // One case: a fresh socket, optionally identified, the frame, the contract's answer.

  async function runCase(frame: FuzzFrame, phase: 'new' | 'ready'): Promise<void> {
    const answer = expectedAnswer(frame, phase);
    totals.cases++;
    totals.byAnswer[`${phase}:${answer.kind}`] = (totals.byAnswer[`${phase}:${answer.kind}`] ?? 0) + 1;
    const where = `${phase === 'new' ? 'before identify' : 'after ready'}, expected ${JSON.stringify(answer)}`;
    const sock = await FuzzSocket.connect(server.wsUrl).catch((err: Error) => {
      throw new Error(`${where}: ${err.message}${serverDown ? ' (server process is dead)' : ''}`);
    });
    try {
      let userId: string | undefined;
      let start = 0;
      if (phase === 'ready') {
        userId = uniqueId('fz');
        sock.sendJson('identify', { id: userId });
        await sock.waitUntil('ready', () => sock.frames.find((f) => f.event === 'ready'));
        start = sock.frames.length;
      }
      sock.send(frame);
      const after = () => sock.frames.slice(start);
      const fail = (msg: string) => new Error(`${where}: ${msg}; ${sock.describe()}`);

      switch (answer.kind) {
        case 'ready': {
          const ready = await sock.waitUntil('ready', () => sock.frames.find((f) => f.event === 'ready' || f.event === 'error'));
          if (ready.event !== 'ready') throw fail('a valid identify was refused');
          const d = ready.data ?? {};
          if (d.id !== answer.id || d.channel !== `rm.users.${answer.id}` || d.queued !== 0) throw fail('ready does not match the identify');
          if (sock.frames.length !== 1) throw fail('frames besides ready');
          break;
        }
        case 'fatal': {
          const close = await sock.closed();
          const frames = after();
          if (close.code !== 4400) throw fail(`close code ${close.code}, not 4400`);
          if (frames.length !== 1 || frames[0].event !== 'error') throw fail('not exactly one error frame before the close');
          const code = frames[0].data?.code;
          if (!answer.codes.includes(code) || !FATAL_CODES.includes(code)) throw fail(`error code ${code}, expected one of ${answer.codes}`);
          if (typeof frames[0].data?.message !== 'string') throw fail('error frame without a message');
          break;
        }
        case 'tooBig': {
          const close = await sock.closed();
          if (close.code !== 1009) throw fail(`close code ${close.code}, not 1009`);
          if (after().some((f) => f.event !== 'error')) throw fail('frames other than an error before the 1009 close');
          break;
        }
        case 'open': {
          // Frames are handled in order: an unknown-event probe marks where the answer to ours ends.
          sock.sendJson('fz.probe', {});
          const expected = [...answer.codes, 'UNKNOWN_EVENT'];
          await sock.waitUntil(`${expected.length} error frame(s)`, () => (after().filter((f) => f.event === 'error').length >= expected.length ? true : undefined));
          const frames = after();
          const codes = frames.map((f) => (f.event === 'error' ? f.data?.code : `(${f.event})`));
          if (JSON.stringify(codes) !== JSON.stringify(expected)) throw fail(`answers ${JSON.stringify(codes)}, expected ${JSON.stringify(expected)}`);
          // still open, and still served
          const payload = `after ${frame.label}`;
          await admin.publish(`rm.users.${userId}`, payload);
          const msg = await sock.waitUntil('a message published after the frame', () => sock.frames.find((f) => f.event === 'message'));
          if (msg.data?.payload !== payload) throw fail('the message published after the frame is not the one delivered');
          sock.sendJson('ack', { ids: [msg.data.id] });
          if (!sock.isOpen) throw fail('socket closed');
          break;
        }
      }
    } finally {
      await sock.close();
    }
  }

  /** Runs one batch: every frame twice (before identify, after ready), checked against the contract. */
  /**
   * Runs one batch: the fixed `examples` first (every limit and forbidden character, each
   * time), then `numRuns` random frames; each frame twice (before identify, after ready).
   */
  async function batch(name: string, seedOffset: number, numRuns: number, arb: fc.Arbitrary<FuzzFrame>, examples: FuzzFrame[] = []): Promise<void> {
    const seed = SEED + seedOffset;
    let count = 0;
    let firstFailureAt = 0;
    // Counterexamples print as describeFrame() rather than as a Buffer's bytes.
    const display = (f: FuzzFrame) => Object.defineProperty({ ...f }, fc.toStringMethod, { value: () => describeFrame(f) }) as FuzzFrame;
    const shown = arb.map(display);
    const property = fc.asyncProperty(shown, async (frame) => {
      // Once the server is dead every case fails: let shrinking keep the frame that killed it.
      if (serverDown) return;
      // Shrinking a case that times out can take long: after SHRINK_BUDGET_MS, keep the smallest failure so far.
      if (firstFailureAt && Date.now() - firstFailureAt > SHRINK_BUDGET_MS) return;
      count++;
      totals.frames++;
      recordIds(frame);
      if (process.env.FUZZ_LOG) {
        const answers = `${JSON.stringify(expectedAnswer(frame, 'new'))} / ${JSON.stringify(expectedAnswer(frame, 'ready'))}`;
        appendFileSync(process.env.FUZZ_LOG, `${name}\t${describeFrame(frame).slice(0, 300)}\t${answers}\n`);
      }
      const results = await Promise.allSettled([runCase(frame, 'new'), runCase(frame, 'ready')]);
      // A crash shows first as a socket closing with 1006: wait a moment for the process's exit.
      if (results.some((r) => r.status === 'rejected')) await waitFor(() => serverDown, 1000).catch(() => undefined);
      if (serverDown) throw new Error(`the server process died while handling ${describeFrame(frame)}\nlast logs:\n${server.logs().slice(-2500)}`);
      const errors = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
      if (errors.length) {
        firstFailureAt ||= Date.now();
        throw new Error(`${describeFrame(frame)}\n${errors.join('\n')}`);
      }
    });
    try {
      await fc.assert(property, { seed, numRuns: numRuns + examples.length, examples: examples.map((f) => [display(f)] as [FuzzFrame]), includeErrorInReport: true });
    } catch (err) {
      throw new Error(`fuzz batch "${name}" failed (FUZZ_SEED=${SEED}, batch seed ${seed}; rerun: FUZZ_SEED=${SEED} npx jest test/fuzz --selectProjects e2e -t '${name}')\n${(err as Error).message}`);
    } finally {
      batchCounts.push([name, count]);
    }
  }

  /** Remembers the invalid string ids sent in identify frames, to check that no key was made of them. */
  function recordIds(frame: FuzzFrame): void {
    if (invalidIdsSeen.size > 5000) return;
    try {
      const v = JSON.parse(frame.bytes.toString('utf8'));
      const id = v?.data?.id;
      if (typeof id === 'string' && !ID_RE.test(id) && id.length < 1000) invalidIdsSeen.add(id);
    } catch {
      // not JSON: no id
    }
  }

  it('wrong JSON and wrong types for event and data', () => batch('structure', 1, runs(50), structureFrame()));

  it('identify: ids at and past every limit, forbidden characters, tokens of every type', () => {
    const identify = (label: string, data: unknown) => text(label, j({ event: 'identify', data }));
    const ofLength = (n: number) => `a${'b'.repeat(n - 1)}`;
    const examples = [
      ...[1, 127, 128, 129, 130].map((n) => identify(`id of ${n} chars`, { id: ofLength(n) })),
      identify('128 chars, all allowed kinds', { id: `Z9._@-${'x'.repeat(122)}` }),
      identify('empty id', { id: '' }),
      ...['.', '_', '@', '-'].map((c) => identify(`first char ${c}`, { id: `${c}abc` })),
      ...FORBIDDEN.flatMap((c) => [
        identify(`forbidden ${j(c)} at start`, { id: `${c}abc` }),
        identify(`forbidden ${j(c)} in middle`, { id: `ab${c}cd` }),
        identify(`forbidden ${j(c)} at end`, { id: `abc${c}` }),
        identify(`forbidden ${j(c)} as char 128`, { id: `${ofLength(127)}${c}` }),
      ]),
      ...[5, null, {}, ['t'], true].map((token) => identify(`token ${j(token)}`, { id: 'fuzz-token', token })),
    ];
    return batch('identify', 2, runs(70), identifyFrame(), examples);
  });

  it("acks with odd ids (other users' included) and ids of the wrong type", () => {
    const ack = (label: string, data: unknown) => text(label, j({ event: 'ack', data }));
    const examples = [
      ack("ack of other users' owed and queued ids", { ids: knownIds() }),
      ...['', '0', '-1', '1e3', '9'.repeat(40), '*', 'rm:seq'].map((id) => ack(`ack of ${j(id)}`, { ids: [id] })),
      ...[{}, { ids: 'x' }, { ids: [1, 2] }, { ids: null }, { ids: [['1']] }, { ids: { 0: '1', length: 1 } }, { ids: [knownIds()[0], 1] }].map((d) => ack(`bad ack ${j(d)}`, d)),
    ];
    return batch('ack', 3, runs(50), ackFrame(knownIds), examples);
  });

  it('binary frames, invalid UTF-8, odd encodings and fragmentation', () => {
    const valid = Buffer.from(j({ event: 'identify', data: { id: 'fuzz-utf8' } }));
    const at = valid.indexOf('fuzz-utf8') + 4;
    const examples: FuzzFrame[] = [
      { label: 'binary identify', bytes: valid, binary: true, splits: [] },
      { label: 'identify in 3 fragments', bytes: valid, binary: false, splits: [1, 10] },
      { label: 'empty text frame', bytes: Buffer.alloc(0), binary: false, splits: [] },
      { label: 'empty binary frame', bytes: Buffer.alloc(0), binary: true, splits: [] },
      ...INVALID_UTF8.map((bad) => ({ label: `invalid UTF-8 ${bad.toString('hex')} in the id`, bytes: Buffer.concat([valid.subarray(0, at), bad, valid.subarray(at)]), binary: false, splits: [] })),
    ];
    return batch('encoding', 4, runs(50), encodingFrame(knownIds), examples);
  });

  it(`frames right under, at and over MAX_FRAME_BYTES (${MAX_FRAME_BYTES})`, () => {
    const sized = (label: string, event: string, data: Record<string, unknown>, size: number, pad: 'x' | '€'): FuzzFrame => {
      const fill = size - Buffer.byteLength(j({ event, data: { ...data, pad: '' } }));
      const padding = pad === '€' ? '€'.repeat(Math.floor(fill / 3)) + 'x'.repeat(fill % 3) : 'x'.repeat(fill);
      const bytes = Buffer.from(j({ event, data: { ...data, pad: padding } }));
      if (bytes.length !== size) throw new Error(`sized example is ${bytes.length} bytes, not ${size}`);
      return { label, bytes, binary: false, splits: [] };
    };
    const examples = [MAX_FRAME_BYTES - 1, MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1].flatMap((size) =>
      (['x', '€'] as const).flatMap((pad) => [
        sized(`identify of ${size} bytes (${pad})`, 'identify', { id: 'fuzz-sized' }, size, pad),
        sized(`ack of ${size} bytes (${pad})`, 'ack', { ids: knownIds() }, size, pad),
        sized(`unknown event of ${size} bytes (${pad})`, 'fz.sized', {}, size, pad),
      ]),
    );
    return batch('size', 5, runs(40), sizedFrame(knownIds), examples);
  });

  it('byte-level mutations of well-formed frames', () => batch('mutation', 6, runs(80), mutatedFrame(knownIds)));

  it('hostile values: deep nesting, huge numbers, __proto__ keys, wide objects', () => batch('hostile', 7, runs(40), hostileFrame(knownIds)));

  it('after all of it, the queued and owed messages are all delivered, in order, with their ids', async () => {
    consumed = true;
    const queued = await TestClient.connect(server.wsUrl);
    try {
      expect((await queued.identify(world.queuedUser)).data.queued).toBe(5);
      const msgs = await queued.messages(5);
      expect(msgs.map((m) => m.data.payload)).toEqual(world.queuedPayloads);
      expect(msgs.slice(0, 4).map((m) => m.data.id)).toEqual(world.queuedIds);
      queued.ack(msgs.map((m) => m.data.id));
    } finally {
      await queued.close();
    }
    // The owed user's only socket goes: what is owed returns to the queue, same ids, same order.
    await world.owedClient.close();
    await waitFor(async () => (await admin.llen(`rm:users:${world.owedUser}:messages`)) === 3, 5000, 'the owed messages back in the queue');
    const owed = await TestClient.connect(server.wsUrl);
    try {
      expect((await owed.identify(world.owedUser)).data.queued).toBe(3);
      const msgs = await owed.messages(3);
      expect(msgs.map((m) => [m.data.id, m.data.payload])).toEqual(world.owedIds.map((id, i) => [id, `o${i + 1}`]));
    } finally {
      await owed.close();
    }
  });
});
