// ESLint flat config: eslint recommended + typescript-eslint recommended, Prettier's config last
// (formatting is Prettier's job: `npm run lint` checks both, `npm run format` rewrites).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['**/dist/', 'coverage/', 'bench/results/', 'soak/results/', 'test-artifacts/', '.tmp/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    rules: {
      // Ids, frames and logs are checked for NUL, C0 and ANSI escape characters on purpose.
      'no-control-regex': 'off',
      // Errors are rethrown with the caught error's message in their own; adding `cause` would change what is printed.
      'preserve-caught-error': 'off',
    },
  },
  {
    // The server, its tests and the client SDK: TypeScript on Node.
    files: ['**/*.ts'],
    languageOptions: { globals: globals.node },
  },
  {
    // Tests read loose JSON bodies and frames and poke at mocks: `any` is the honest type there.
    files: ['**/*.spec.ts', '**/*.int-spec.ts', 'test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // Benchmarks, chaos, soak, scripts and jest.config.js: CommonJS on Node.
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: {
      // CommonJS loads modules with require().
      '@typescript-eslint/no-require-imports': 'off',
      // `const WebSocket = require('ws')` and `const crypto = require('node:crypto')` shadow Node's globals on purpose.
      'no-redeclare': ['error', { builtinGlobals: false }],
    },
  },
  {
    // The demo page's script: a browser ES module.
    files: ['src/demo/public/**/*.js'],
    languageOptions: { sourceType: 'module', globals: globals.browser },
  },
  prettier,
);
