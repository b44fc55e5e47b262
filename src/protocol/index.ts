// The wire vocabulary: frames, codes, ids and the stored message format. Every layer
// imports it; it imports nothing of theirs.
export * from './ids';
export * from './frame-error';
export * from './frames';
export * from './envelope';
export * from './server-events';
