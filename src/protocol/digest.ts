import { createHash } from 'node:crypto';

/** SHA-256 of text (UTF-8) or bytes, as 32 bytes: for constant-time comparisons of secrets of any length. */
export const sha256Bytes = (data: string | Buffer): Buffer => createHash('sha256').update(data).digest();

/** SHA-256 of text (UTF-8), as 64 hex digits: a name or fingerprint that never shows what it was made of. */
export const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');
