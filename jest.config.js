// Three projects, by what a spec starts:
// - unit: nothing (src/**/*.spec.ts, and the client SDK's client/src/**/*.spec.ts), no Redis;
// - integration: a real redis-server, no server process (src/**/*.int-spec.ts, beside the code
//   or the Lua script they test);
// - e2e: real redis-server and server processes (test/**/*.e2e-spec.ts).
// Type-checking is the build's job (`npm run build` runs first); tests only transpile.
const tsJest = ['ts-jest', { tsconfig: 'tsconfig.json', transpilation: true }];

module.exports = {
  testTimeout: 60000,
  // A suite that leaves a handle open (a client socket in its last close, a child's pipe) must not
  // keep CI waiting after every test has run; each suite's afterAll still stops what it started.
  forceExit: true,
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      rootDir: '.',
      testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/client/src/**/*.spec.ts'],
      transform: { '^.+\\.ts$': tsJest },
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      rootDir: '.',
      testMatch: ['<rootDir>/src/**/*.int-spec.ts'],
      transform: { '^.+\\.ts$': tsJest },
    },
    {
      displayName: 'e2e',
      testEnvironment: 'node',
      rootDir: '.',
      testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
      transform: { '^.+\\.ts$': tsJest },
    },
  ],
};
