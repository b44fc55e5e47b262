import { getMetadataStorage } from 'class-validator';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BOOLEAN_SETTINGS, ConfigError, Environment, ENVIRONMENT_KEYS, INTEGER_SETTINGS, validateEnvironment } from './environment';
import { optionsFromEnvironment } from './messenger-options';

describe('validateEnvironment', () => {
  it('applies the documented defaults to an empty environment', () => {
    const env = validateEnvironment({});

    expect(env).toMatchObject({
      PORT: 8080,
      WS_PATH: '/',
      MAX_FRAME_BYTES: 1048576,
      REDIS_URL: 'redis://127.0.0.1:6379',
      IDENTIFY_TIMEOUT_MS: 10000,
      MAX_INFLIGHT: 1000,
      AUTH_MODE: 'none',
      LOG_LEVEL: 'log',
    });
  });

  it('reads integers and strings from their text form', () => {
    const env = validateEnvironment({ PORT: '9000', MAX_INFLIGHT: '5', AUTH_MODE: 'key', WS_PATH: '/ws' });

    expect(env).toMatchObject({ PORT: 9000, MAX_INFLIGHT: 5, AUTH_MODE: 'key', WS_PATH: '/ws' });
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['MAX_INFLIGHT', '0'],
    ['MAX_FRAME_BYTES', '-1'],
    ['REDIS_URL', 'http://localhost'],
    ['AUTH_MODE', 'password'],
    ['WS_PATH', 'ws'],
    ['LOG_LEVEL', 'loud'],
    ['IDENTIFY_TIMEOUT_MS', '1.5'],
    ['DEMO', 'yes'],
    ['INTERNAL_PORT', 'ninety'],
    ['INTERNAL_PORT', '0'],
    ['INTERNAL_PORT', '70000'],
    ['DOCS', 'maybe'],
    ['PUBLISH_API_KEYS', 'tooshortkey'],
    ['PUBLISH_API_KEYS', 'a-long-enough-key-1,short'],
    ['MAX_PUBLISH_BYTES', '12'],
    ['EVENTS_STREAM', 'has space'],
    ['EVENTS_MAXLEN', '0'],
    ['UNREAD_AFTER_SECONDS', '-1'],
    ['ADMIN_API_KEYS', 'short-key'],
    ['REDIS_TLS', 'yes'],
    ['REDIS_PASSWORD', 'has space'],
    ['REDIS_COMMAND_TIMEOUT_MS', '100'],
    ['PUBLISH_WAIT_REPLICAS', '-1'],
    ['PUBLISH_WAIT_REPLICAS', '17'],
    ['PUBLISH_WAIT_TIMEOUT_MS', '5'],
  ])('refuses %s=%s with a message naming the variable, not its value', (name, value) => {
    const run = () => validateEnvironment({ [name]: value });

    expect(run).toThrow(ConfigError);
    expect(run).toThrow(new RegExp(name));
    expect(() => run()).not.toThrow(new RegExp(`\\b${value}\\b.*must`));
  });

  it('reads DEMO as true or false, off by default, and never in production', () => {
    expect(validateEnvironment({}).DEMO).toBe(false);
    expect(validateEnvironment({ DEMO: 'true' }).DEMO).toBe(true);
    expect(validateEnvironment({ DEMO: 'false' }).DEMO).toBe(false);
    expect(() => validateEnvironment({ NODE_ENV: 'production', AUTH_MODE: 'none', DEMO: 'true' })).toThrow(/DEMO must not be true when NODE_ENV=production/);
  });

  it('reads PUBLISH_API_KEYS as a list (off when unset) and MAX_PUBLISH_BYTES with its default', () => {
    expect(validateEnvironment({}).PUBLISH_API_KEYS).toBeUndefined();
    expect(validateEnvironment({}).MAX_PUBLISH_BYTES).toBe(1048576);
    expect(validateEnvironment({ PUBLISH_API_KEYS: 'aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbb' }).PUBLISH_API_KEYS).toBe('aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbb');
  });

  it('requires AUTH_MODE in production, an empty value counting as unset', () => {
    expect(() => validateEnvironment({ NODE_ENV: 'production' })).toThrow(/AUTH_MODE/);
    expect(() => validateEnvironment({ NODE_ENV: 'production', AUTH_MODE: '' })).toThrow(/AUTH_MODE/);
    expect(validateEnvironment({ NODE_ENV: 'production', AUTH_MODE: 'none' }).AUTH_MODE).toBe('none');
  });

  it('logs JSON by default when NODE_ENV=production, text otherwise; LOG_FORMAT wins either way', () => {
    expect(validateEnvironment({}).LOG_FORMAT).toBe('text');
    expect(validateEnvironment({ NODE_ENV: 'development' }).LOG_FORMAT).toBe('text');
    expect(validateEnvironment({ NODE_ENV: 'production', AUTH_MODE: 'none' }).LOG_FORMAT).toBe('json');
    expect(validateEnvironment({ NODE_ENV: 'production', AUTH_MODE: 'none', LOG_FORMAT: '' }).LOG_FORMAT).toBe('json');
    expect(validateEnvironment({ NODE_ENV: 'production', AUTH_MODE: 'none', LOG_FORMAT: 'text' }).LOG_FORMAT).toBe('text');
    expect(validateEnvironment({ LOG_FORMAT: 'json' }).LOG_FORMAT).toBe('json');
    expect(() => validateEnvironment({ NODE_ENV: 'production', AUTH_MODE: 'none', LOG_FORMAT: 'xml' })).toThrow(/LOG_FORMAT must be one of/);
  });

  it('requires a key for AUTH_MODE=jwt and never prints the secret', () => {
    expect(() => validateEnvironment({ AUTH_MODE: 'jwt' })).toThrow(/AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY/);
    const short = 'tiny-secret';
    expect(() => validateEnvironment({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: short })).toThrow(/AUTH_JWT_SECRET must be at least 32/);
    try {
      validateEnvironment({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: short });
    } catch (error) {
      expect((error as Error).message).not.toContain(short);
    }
    expect(validateEnvironment({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: 'x'.repeat(32) }).AUTH_MODE).toBe('jwt');
  });

  it('reads AUTH_JWKS_URL (an http(s) URL, enough alone for AUTH_MODE=jwt) and AUTH_JWT_REQUIRE_EXP (true by default)', () => {
    expect(validateEnvironment({}).AUTH_JWT_REQUIRE_EXP).toBe(true);
    expect(validateEnvironment({ AUTH_JWT_REQUIRE_EXP: 'false' }).AUTH_JWT_REQUIRE_EXP).toBe(false);
    expect(() => validateEnvironment({ AUTH_JWT_REQUIRE_EXP: 'no' })).toThrow(/AUTH_JWT_REQUIRE_EXP must be true or false/);
    const jwks = 'https://idp.example/.well-known/jwks.json';
    expect(validateEnvironment({ AUTH_MODE: 'jwt', AUTH_JWKS_URL: jwks })).toMatchObject({ AUTH_MODE: 'jwt', AUTH_JWKS_URL: jwks });
    expect(validateEnvironment({ AUTH_MODE: 'jwt', AUTH_JWKS_URL: 'http://127.0.0.1:8081/jwks' }).AUTH_JWKS_URL).toBe('http://127.0.0.1:8081/jwks');
    for (const bad of ['ftp://idp.example/jwks', 'idp.example/jwks', 'https://', 'https://idp example/jwks', 'http://[::1/jwks']) {
      expect(() => validateEnvironment({ AUTH_MODE: 'jwt', AUTH_JWKS_URL: bad })).toThrow(/^Invalid configuration:\n {2}- AUTH_JWKS_URL must be an http:\/\/ or https:\/\/ URL$/);
    }
  });

  it('reads INTERNAL_PORT (unset by default) and DOCS (on by default)', () => {
    expect(validateEnvironment({})).toMatchObject({ DOCS: true });
    expect(validateEnvironment({}).INTERNAL_PORT).toBeUndefined();
    expect(validateEnvironment({ INTERNAL_PORT: '9090', DOCS: 'false' })).toMatchObject({ INTERNAL_PORT: 9090, DOCS: false });
    expect(validateEnvironment({ DOCS: 'TRUE' }).DOCS).toBe(true);
  });

  it('refuses an INTERNAL_PORT equal to PORT, the default PORT included', () => {
    expect(() => validateEnvironment({ PORT: '9000', INTERNAL_PORT: '9000' })).toThrow(/INTERNAL_PORT must differ from PORT/);
    expect(() => validateEnvironment({ INTERNAL_PORT: '8080' })).toThrow(/INTERNAL_PORT must differ from PORT/);
    expect(validateEnvironment({ PORT: '9000', INTERNAL_PORT: '8080' }).INTERNAL_PORT).toBe(8080);
  });

  it('reads the events and admin settings: off by default, UNREAD_AFTER_SECONDS only with EVENTS_STREAM', () => {
    expect(validateEnvironment({})).toMatchObject({ EVENTS_MAXLEN: 100000, UNREAD_AFTER_SECONDS: 0 });
    expect(validateEnvironment({}).EVENTS_STREAM).toBeUndefined();
    expect(validateEnvironment({}).ADMIN_API_KEYS).toBeUndefined();
    expect(validateEnvironment({ EVENTS_STREAM: 'rm:events', EVENTS_MAXLEN: '50', UNREAD_AFTER_SECONDS: '30' })).toMatchObject({
      EVENTS_STREAM: 'rm:events',
      EVENTS_MAXLEN: 50,
      UNREAD_AFTER_SECONDS: 30,
    });
    expect(() => validateEnvironment({ UNREAD_AFTER_SECONDS: '30' })).toThrow(/UNREAD_AFTER_SECONDS needs EVENTS_STREAM/);
  });

  it('takes ADMIN_API_KEYS of 16+ characters each, and never prints one', () => {
    const keys = 'a'.repeat(16) + ', ' + 'b'.repeat(40);
    expect(validateEnvironment({ ADMIN_API_KEYS: keys }).ADMIN_API_KEYS).toBe(keys);
    const short = 'c'.repeat(15);
    const run = () => validateEnvironment({ ADMIN_API_KEYS: `${'a'.repeat(16)},${short}` });
    expect(run).toThrow(/ADMIN_API_KEYS must be a comma-separated list of keys of at least 16 characters/);
    expect(run).not.toThrow(new RegExp(short));
  });

  it('reads the Redis credentials, TLS and timeouts, with their defaults, and never prints a password', () => {
    expect(validateEnvironment({})).toMatchObject({ REDIS_TLS: false, REDIS_COMMAND_TIMEOUT_MS: 5000, PUBLISH_WAIT_REPLICAS: 0, PUBLISH_WAIT_TIMEOUT_MS: 1000 });
    const options = optionsFromEnvironment(
      validateEnvironment({
        REDIS_USERNAME: 'app',
        REDIS_PASSWORD: 's3cret!',
        REDIS_TLS: 'true',
        PUBLISH_WAIT_REPLICAS: '1',
        REDIS_SENTINELS: 'h:26379',
        REDIS_SENTINEL_MASTER: 'm',
        REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
      }),
    );
    expect(options).toMatchObject({
      redisUsername: 'app',
      redisPassword: 's3cret!',
      redisTls: true,
      redisSentinelPassword: 'sentinel-secret',
      publishWaitReplicas: 1,
      publishWaitTimeoutMs: 1000,
      redisCommandTimeoutMs: 5000,
    });
    expect(() => validateEnvironment({ REDIS_USERNAME: 'app' })).toThrow(/REDIS_USERNAME needs REDIS_PASSWORD/);
    expect(() => validateEnvironment({ REDIS_SENTINEL_PASSWORD: 'x' })).toThrow(/REDIS_SENTINEL_PASSWORD needs REDIS_SENTINELS/);
    const run = () => validateEnvironment({ REDIS_PASSWORD: 'top secret' });
    expect(run).toThrow(/REDIS_PASSWORD must be/);
    expect(run).not.toThrow(/top secret/);
  });

  it('reads REDIS_TLS_CA_FILE at start: only with TLS, a missing or non-PEM file stops the start naming the variable', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rm-env-'));
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    writeFileSync(join(dir, 'ca.pem'), pem);
    writeFileSync(join(dir, 'not.pem'), 'hello');
    expect(optionsFromEnvironment(validateEnvironment({ REDIS_TLS: 'true', REDIS_TLS_CA_FILE: join(dir, 'ca.pem') })).redisTlsCa).toBe(pem);
    expect(optionsFromEnvironment(validateEnvironment({ REDIS_URL: 'rediss://h:6380', REDIS_TLS_CA_FILE: join(dir, 'ca.pem') })).redisTlsCa).toBe(pem);
    expect(() => validateEnvironment({ REDIS_TLS_CA_FILE: join(dir, 'ca.pem') })).toThrow(/REDIS_TLS_CA_FILE needs TLS/);
    const missing = () => optionsFromEnvironment(validateEnvironment({ REDIS_TLS: 'true', REDIS_TLS_CA_FILE: join(dir, 'nope.pem') }));
    expect(missing).toThrow(ConfigError);
    expect(missing).toThrow(/REDIS_TLS_CA_FILE cannot be read \(ENOENT\)/);
    expect(() => optionsFromEnvironment(validateEnvironment({ REDIS_TLS: 'true', REDIS_TLS_CA_FILE: join(dir, 'not.pem') }))).toThrow(/REDIS_TLS_CA_FILE must be a PEM file/);
  });
});

describe('heartbeat and frame-rate settings', () => {
  it('defaults to a 25 s ping, a 20 s timeout and 2000 frames a second', () => {
    expect(validateEnvironment({})).toMatchObject({ PING_INTERVAL_MS: 25000, PING_TIMEOUT_MS: 20000, MAX_FRAMES_PER_SECOND: 2000 });
  });

  it('takes 0 to turn the heartbeat off, and values from 100 ms', () => {
    expect(validateEnvironment({ PING_INTERVAL_MS: '0' }).PING_INTERVAL_MS).toBe(0);
    expect(validateEnvironment({ PING_INTERVAL_MS: '100', PING_TIMEOUT_MS: '100' })).toMatchObject({ PING_INTERVAL_MS: 100, PING_TIMEOUT_MS: 100 });
  });

  it.each([
    ['PING_INTERVAL_MS', '99'],
    ['PING_INTERVAL_MS', '-1'],
    ['PING_TIMEOUT_MS', '0'],
    ['PING_TIMEOUT_MS', '99'],
    ['MAX_FRAMES_PER_SECOND', '-1'],
    ['MAX_FRAMES_PER_SECOND', 'lots'],
  ])('refuses %s=%s, naming the variable', (key, value) => {
    expect(() => validateEnvironment({ [key]: value })).toThrow(new RegExp(key));
  });
});

describe('the settings read', () => {
  const sorted = (keys: readonly string[]) => [...keys].sort();
  /** A valid value of every setting without a default (two environments: a Cluster, or Sentinels), and what it is read as. */
  const sentinels = {
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    INTERNAL_PORT: '9090',
    REDIS_SENTINELS: 'h:26379',
    REDIS_SENTINEL_MASTER: 'm',
    REDIS_USERNAME: 'app',
    REDIS_PASSWORD: 's3cret!',
    REDIS_TLS: 'true',
    REDIS_TLS_CA_FILE: '/etc/redis/ca.pem',
    REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
    AUTH_JWT_SECRET: 'x'.repeat(32),
    AUTH_JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----',
    AUTH_JWKS_URL: 'https://idp.example/.well-known/jwks.json',
    INSTANCE_ID: 'node-1',
    ALLOWED_ORIGINS: 'https://app.example',
    TRUSTED_PROXIES: '10.0.0.1',
    AUTH_JWT_ISSUER: 'https://idp.example/',
    AUTH_JWT_AUDIENCE: 'app',
    EVENTS_STREAM: 'rm:events',
    ADMIN_API_KEYS: 'a'.repeat(16),
    PUBLISH_API_KEYS: 'b'.repeat(16),
  };
  const cluster = { REDIS_CLUSTER_NODES: 'h1:7000,h2:7001' };
  const read = (value: string) => (/^\d+$/.test(value) ? Number(value) : value === 'true' ? true : value);

  it('lists every setting the class validates, each once, and nothing else', () => {
    const decorated = getMetadataStorage()
      .getTargetValidationMetadatas(Environment, '', true, false)
      .map((m) => m.propertyName);
    expect(sorted(ENVIRONMENT_KEYS)).toEqual(sorted([...new Set(decorated)]));
    expect(new Set(ENVIRONMENT_KEYS).size).toBe(ENVIRONMENT_KEYS.length);
    expect(ENVIRONMENT_KEYS).toEqual(expect.arrayContaining(['HOST', 'INTERNAL_PORT', 'REDIS_PASSWORD', 'ADMIN_API_KEYS', 'PORT', 'DEMO']));
  });

  it('reads every setting without a default (the ones no default lists)', () => {
    const optional = ENVIRONMENT_KEYS.filter((key) => new Environment()[key] === undefined);
    expect(sorted(optional)).toEqual(sorted([...Object.keys(sentinels), ...Object.keys(cluster)].filter((key) => key !== 'REDIS_TLS')));
    const env = validateEnvironment(sentinels);
    for (const [key, value] of Object.entries(sentinels)) expect([key, env[key as keyof Environment]]).toEqual([key, read(value)]);
    expect(validateEnvironment(cluster).REDIS_CLUSTER_NODES).toBe(cluster.REDIS_CLUSTER_NODES);
  });

  it('reads integers and booleans by their validator, an optional integer (INTERNAL_PORT) too', () => {
    const defaults = Object.entries(new Environment());
    expect(sorted(INTEGER_SETTINGS)).toEqual(sorted([...defaults.filter(([, v]) => typeof v === 'number').map(([k]) => k), 'INTERNAL_PORT']));
    expect(sorted(BOOLEAN_SETTINGS)).toEqual(sorted(defaults.filter(([, v]) => typeof v === 'boolean').map(([k]) => k)));
    expect(validateEnvironment({ INTERNAL_PORT: '9091' }).INTERNAL_PORT).toBe(9091);
  });

  it('are the settings config/.env.example and docs/operations.md list', () => {
    const root = join(__dirname, '..', '..');
    const example = readFileSync(join(root, 'config', '.env.example'), 'utf8');
    expect(sorted([...example.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]))).toEqual(sorted(ENVIRONMENT_KEYS));
    const operations = readFileSync(join(root, 'docs', 'operations.md'), 'utf8');
    expect(ENVIRONMENT_KEYS.filter((key) => !operations.includes(`\`${key}\``))).toEqual([]);
  });
});
