// POST /v1/messages from tests, with Node's fetch (every call with a timeout).
export const PUBLISH_KEY = 'test-publish-key-0123456789';

export interface Answer {
  status: number;
  body: any;
}

export async function postMessage(
  baseUrl: string,
  body: unknown,
  opts: { key?: string | null; idempotencyKey?: string; raw?: string; timeoutMs?: number } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const key = opts.key === undefined ? PUBLISH_KEY : opts.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (opts.idempotencyKey !== undefined) headers['idempotency-key'] = opts.idempotencyKey;
  const response = await fetch(`${baseUrl}/v1/messages`, {
    method: 'POST',
    headers,
    body: opts.raw ?? JSON.stringify(body),
    signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: response.status, body: parsed };
}

/** DELETE /v1/messages/<id> with a query (`to` or `group`), as postMessage answers. */
export async function retractMessage(baseUrl: string, id: string, query: Record<string, string>, opts: { key?: string | null } = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  const key = opts.key === undefined ? PUBLISH_KEY : opts.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  const search = new URLSearchParams(query).toString();
  const response = await fetch(`${baseUrl}/v1/messages/${encodeURIComponent(id)}${search ? `?${search}` : ''}`, {
    method: 'DELETE',
    headers,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: response.status, body: parsed };
}
