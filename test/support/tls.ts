// A throwaway CA and a server certificate it signed (for 127.0.0.1 and localhost), made with
// openssl for TLS tests of redis-server; the files live in a tracked temp dir.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { trackDir } from './proc';

export interface TestTls {
  /** PEM files: the CA's certificate, the server's certificate and key. */
  caFile: string;
  certFile: string;
  keyFile: string;
  /** The CA certificate's PEM text (for ioredis's `tls.ca`). */
  ca: string;
}

const run = promisify(execFile);

export async function makeTestTls(): Promise<TestTls> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rm-tls-'));
  trackDir(dir);
  const at = (name: string): string => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', at('ca.key'), '-out', at('ca.crt'), '-days', '2', '-subj', '/CN=redmessenger-test-ca']);
  await run('openssl', ['req', '-new', ...ec, '-keyout', at('server.key'), '-out', at('server.csr'), '-subj', '/CN=localhost']);
  await writeFile(at('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', ['x509', '-req', '-in', at('server.csr'), '-CA', at('ca.crt'), '-CAkey', at('ca.key'), '-CAcreateserial', '-out', at('server.crt'), '-days', '2', '-extfile', at('ext.cnf')]);
  return { caFile: at('ca.crt'), certFile: at('server.crt'), keyFile: at('server.key'), ca: await readFile(at('ca.crt'), 'utf8') };
}
