import { isInternalPath } from './internal-port';

describe('isInternalPath', () => {
  it.each(['/metrics', '/metrics/', '/METRICS', '/metrics?x=1', '//metrics', '/%6detrics', '/docs', '/docs/swagger-ui-bundle.js', '/docs-json', '/docs-yaml', '/v1/users', '/v1/users/u1/messages'])(
    '%s is internal',
    (url) => expect(isInternalPath(url)).toBe(true),
  );

  it.each(['/', '/health', '/health/live', '/v1/messages', '/metricsx', '/docsy', '/v1/usersx', '/%E0%A4%A'])('%s is public', (url) => expect(isInternalPath(url)).toBe(false));

  it('takes a list of its own', () => expect(isInternalPath('/admin/x', ['/admin'])).toBe(true));
});
