import { NotFoundException, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { MessengerOptions } from '../config/messenger-options';
import { ApiKeyGuard, type ApiKeys, type KeyedRequest } from './api-key.guard';

const KEY = 'first-key-0123456789';

/** A guard over `keys`, and a request to it with `authorization`: what it answered, the headers set, the key left on the request. */
function check(spec: Omit<ApiKeys, 'keys'>, keys: string[], authorization?: string) {
  const Guard = ApiKeyGuard({ ...spec, keys: (options) => options.publishApiKeys });
  const guard = new (Guard as new (options: MessengerOptions) => CanActivate)({ publishApiKeys: keys } as MessengerOptions);
  const request = { method: 'GET', url: '/v1/x?y=1', originalUrl: '/v1/x?y=1', headers: { authorization } } as unknown as KeyedRequest;
  const headers: Record<string, string> = {};
  const context = { switchToHttp: () => ({ getRequest: () => request, getResponse: () => ({ setHeader: (name: string, value: string) => (headers[name] = value) }) }) } as ExecutionContext;
  try {
    return { passed: guard.canActivate(context), headers, apiKey: request.apiKey };
  } catch (error) {
    return { error, headers, apiKey: request.apiKey };
  }
}

describe('ApiKeyGuard', () => {
  it('passes a request with one of the keys and leaves the key on it', () => {
    expect(check({ name: 'K' }, ['other-key-0123456789', KEY], `Bearer ${KEY}`)).toEqual({ passed: true, headers: {}, apiKey: KEY });
  });

  it('no keys: the 404 Nest gives an unknown route', () => {
    const { error } = check({ name: 'K' }, [], `Bearer ${KEY}`);
    expect(error).toBeInstanceOf(NotFoundException);
    expect((error as NotFoundException).getResponse()).toEqual({ statusCode: 404, error: 'Not Found', message: 'Cannot GET /v1/x?y=1' });
  });

  it("401 without a valid key: Nest's body, or the given message; WWW-Authenticate only when asked", () => {
    const plain = check({ name: 'K', challenge: true }, [KEY], 'Bearer wrong-key-0123456789');
    expect(plain.error).toBeInstanceOf(UnauthorizedException);
    expect((plain.error as UnauthorizedException).getResponse()).toEqual({ statusCode: 401, message: 'Unauthorized' });
    expect(plain.headers).toEqual({ 'WWW-Authenticate': 'Bearer' });
    const told = check({ name: 'K', unauthorized: 'send a key' }, [KEY]);
    expect((told.error as UnauthorizedException).getResponse()).toEqual({ statusCode: 401, error: 'Unauthorized', message: 'send a key' });
    expect(told.headers).toEqual({});
  });

  it('refuses keys shorter than minKeyLength at construction, naming the keys and not the key', () => {
    expect(() => check({ name: 'ADMIN_API_KEYS (adminApiKeys)', minKeyLength: 16 }, [KEY, 'short'])).toThrow(/^ADMIN_API_KEYS \(adminApiKeys\): every key must be at least 16 characters$/);
    expect(check({ name: 'K' }, ['short'], 'Bearer short').passed).toBe(true);
  });
});
