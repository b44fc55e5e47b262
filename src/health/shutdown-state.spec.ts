import { Test } from '@nestjs/testing';
import { ShutdownState } from './shutdown-state';

describe('ShutdownState', () => {
  it('begins once and stays begun', () => {
    const state = new ShutdownState();
    expect(state.isShuttingDown).toBe(false);
    expect(state.startedAt).toBeUndefined();

    state.begin();
    const since = state.startedAt;
    state.begin();

    expect(state.isShuttingDown).toBe(true);
    expect(state.startedAt).toBe(since);
  });

  it('begins on its own when the application starts closing', async () => {
    const moduleRef = await Test.createTestingModule({ providers: [ShutdownState] }).compile();
    const app = await moduleRef.init();
    const state = app.get(ShutdownState);
    expect(state.isShuttingDown).toBe(false);

    await app.close();

    expect(state.isShuttingDown).toBe(true);
  });
});
