// Ids unique across test files and jest workers, valid per PROTOCOL.md
// (^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$), so tests can share one Redis safely.
import { randomBytes } from 'node:crypto';

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
let counter = 0;

export function uniqueId(prefix = 'u'): string {
  // pid separates workers, the counter calls within a file, the random part test files
  // that restart the counter in the same worker (jest reloads modules per file).
  const id = `${prefix}-${process.pid}-${(counter++).toString(36)}-${randomBytes(4).toString('hex')}`;
  if (!ID_RE.test(id)) throw new Error(`uniqueId: prefix ${JSON.stringify(prefix)} gives an invalid id ${id}`);
  return id;
}
