import { CloseCode, ErrorCode, FrameError } from './frame-error';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { AckDto, IdentifyDto, parseFrame, toAck, toIdentify, toRefresh } from './frames';

const text = (value: string) => Buffer.from(value, 'utf8');
const refusal = (run: () => unknown): FrameError => {
  try {
    run();
  } catch (error) {
    if (error instanceof FrameError) return error;
    throw error;
  }
  throw new Error('expected a FrameError');
};

describe('parseFrame', () => {
  it('accepts the {event, data} shape', () => {
    expect(parseFrame(text('{"event":"ack","data":{"ids":["1"]}}'), false)).toEqual({ event: 'ack', data: { ids: ['1'] } });
  });

  it.each([
    ['not JSON', 'hello'],
    ['a JSON array', '[1,2]'],
    ['a JSON string', '"identify"'],
    ['no event', '{"data":{}}'],
    ['a numeric event', '{"event":1,"data":{}}'],
    ['no data', '{"event":"identify"}'],
    ['null data', '{"event":"identify","data":null}'],
    ['array data', '{"event":"identify","data":[]}'],
  ])('refuses %s as a fatal BAD_FRAME', (_what, frame) => {
    const error = refusal(() => parseFrame(text(frame), false));

    expect(error.code).toBe(ErrorCode.BadFrame);
    expect(error.close).toBe(CloseCode.BadFrame);
  });

  it('refuses binary frames and invalid UTF-8', () => {
    expect(refusal(() => parseFrame(text('{"event":"ack","data":{}}'), true)).code).toBe(ErrorCode.BadFrame);
    expect(refusal(() => parseFrame(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), false)).code).toBe(ErrorCode.BadFrame);
  });
});

/** Whether `run` accepts the data, and whether the DTO's class-validator rule does: the two must agree. */
const agree = <T extends object>(dto: new () => T, data: Record<string, unknown>, run: (data: Record<string, unknown>) => unknown) => {
  const byDto = validateSync(plainToInstance(dto, data), { forbidUnknownValues: true }).length === 0;
  const byHand = (() => {
    try {
      run(data);
      return true;
    } catch {
      return false;
    }
  })();
  return [byHand, byDto];
};

describe('toIdentify', () => {
  it('applies the same rule as the IdentifyDto class-validator spec', () => {
    const ids: unknown[] = ['user1', 'a.b_c@d-e', 'x'.repeat(128), 'x'.repeat(129), '', '-a', 'é', 'a b', 7, null, undefined, ['u'], {}];
    const tokens: unknown[] = [undefined, 't', '', null, 5, {}, ['t']];
    for (const id of ids)
      for (const token of tokens) {
        const [byHand, byDto] = agree(IdentifyDto, token === undefined ? { id } : { id, token }, toIdentify);
        expect({ id, token, byHand }).toEqual({ id, token, byHand: byDto });
      }
  });

  it('accepts a valid id with or without a string token', () => {
    expect(toIdentify({ id: 'user1' })).toMatchObject({ id: 'user1' });
    expect(toIdentify({ id: 'a.b_c@d-e', token: 't' })).toMatchObject({ id: 'a.b_c@d-e', token: 't' });
    expect(toIdentify({ id: 'x'.repeat(128) }).id).toHaveLength(128);
  });

  it.each(['', '*', '?', 'a[b', 'a:b', 'a b', '-a', '.a', 'x'.repeat(129), 'é'])('refuses the id %j as INVALID_ID (4400)', (id) => {
    const error = refusal(() => toIdentify({ id }));

    expect(error.code).toBe(ErrorCode.InvalidId);
    expect(error.close).toBe(CloseCode.BadFrame);
  });

  it.each([[null], [5], [{}], [['t']]])('refuses a present, non-string token %j (4400)', (token) => {
    expect(refusal(() => toIdentify({ id: 'user1', token })).close).toBe(CloseCode.BadFrame);
  });

  it('refuses a missing or non-string id', () => {
    expect(refusal(() => toIdentify({})).code).toBe(ErrorCode.InvalidId);
    expect(refusal(() => toIdentify({ id: 7 })).code).toBe(ErrorCode.InvalidId);
  });
});

describe('toAck', () => {
  it('applies the same rule as the AckDto class-validator spec', () => {
    for (const ids of [['1'], [], Array(10001).fill('x'), ['1', 2], 'x', null]) {
      const [byHand, byDto] = agree(AckDto, { ids }, toAck);
      expect(byHand).toBe(byDto);
    }
  });

  it('accepts an array of strings', () => {
    expect(toAck({ ids: ['1', '2'] }).ids).toEqual(['1', '2']);
    expect(toAck({ ids: [] }).ids).toEqual([]);
  });

  it.each([[{}], [{ ids: '1' }], [{ ids: [1] }], [{ ids: null }], [{ ids: ['1', null] }]])('answers %j with a non-fatal BAD_ACK', (data) => {
    const error = refusal(() => toAck(data as Record<string, unknown>));

    expect(error.code).toBe(ErrorCode.BadAck);
    expect(error.close).toBeUndefined();
  });
});

describe('toRefresh', () => {
  it('takes a string token, and only it', () => {
    expect(toRefresh({ token: 'a.b.c', other: 1 })).toEqual({ token: 'a.b.c' });
  });

  it.each([[{}], [{ token: 5 }], [{ token: null }], [{ token: ['a'] }]])("refuses %j as a bad frame (4400), like identify's token rule", (data) => {
    const error = refusal(() => toRefresh(data as Record<string, unknown>));
    expect([error.code, error.close]).toEqual([ErrorCode.BadFrame, CloseCode.BadFrame]);
    expect(error.message).toMatch(/^refresh "token" must be a string, not /);
  });
});

describe('refusal messages say what is actually wrong', () => {
  it.each([
    ['[1,2]', 'Frame must be a JSON object {"event": string, "data": object}, not an array'],
    ['"identify"', 'Frame must be a JSON object {"event": string, "data": object}, not a string'],
    ['{"data":{}}', 'Frame "event" must be a string, not missing'],
    ['{"event":1,"data":{}}', 'Frame "event" must be a string, not a number'],
    ['{"event":"identify"}', 'Frame "data" must be an object, not missing'],
    ['{"event":"identify","data":null}', 'Frame "data" must be an object, not null'],
    ['{"event":"identify","data":[]}', 'Frame "data" must be an object, not an array'],
  ])('parseFrame(%s)', (frame, message) => {
    expect(refusal(() => parseFrame(text(frame), false)).message).toBe(message);
  });

  it.each([
    [{}, 'identify "id" must be a string, not missing'],
    [{ id: 7 }, 'identify "id" must be a string, not a number'],
    [{ id: 'a:b' }, 'identify "id" must match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$'],
    [{ id: 'user1', token: null }, 'identify "token" must be a string when present, not null'],
    [{ id: 'user1', token: 5 }, 'identify "token" must be a string when present, not a number'],
    [{ id: 'user1', token: ['t'] }, 'identify "token" must be a string when present, not an array'],
  ])('toIdentify(%j)', (data, message) => {
    expect(refusal(() => toIdentify(data as Record<string, unknown>)).message).toBe(message);
  });

  it('a string token of any length is valid (the frame size is the only limit)', () => {
    const token = 'x'.repeat(900 * 1024);
    expect(toIdentify({ id: 'user1', token }).token).toHaveLength(token.length);
  });

  it.each([
    [{}, 'ack "ids" must be an array of strings, not missing'],
    [{ ids: '1' }, 'ack "ids" must be an array of strings, not a string'],
    [{ ids: null }, 'ack "ids" must be an array of strings, not null'],
    [{ ids: ['1', null] }, 'ack "ids"[1] must be a string, not null'],
    [{ ids: [1] }, 'ack "ids"[0] must be a string, not a number'],
    [{ ids: Array(10001).fill('x') }, 'ack "ids" holds 10001 ids; at most 10000 per frame'],
  ])('toAck(%j)', (data, message) => {
    expect(refusal(() => toAck(data as Record<string, unknown>)).message).toBe(message);
  });
});
