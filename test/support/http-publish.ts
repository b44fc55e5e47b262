// POST and DELETE /v1/messages from tests, with Node's fetch (every call with a timeout).
export const PUBLISH_KEY = 'test-publish-key-0123456789';

export interface Answer {
  status: number;
  body: any;
}

/** Bearer PUBLISH_KEY unless `key` says another (or null: none). */
function authorized(key: string | null | undefined, headers: Record<string, string> = {}): Record<string, string> {
  const bearer = key === undefined ? PUBLISH_KEY : key;
  if (bearer !== null) headers.authorization = `Bearer ${bearer}`;
  return headers;
}

/** The status and the body, parsed when it is JSON. */
async function answerOf(response: Response): Promise<Answer> {
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: response.status, body: parsed };
}

export async function postMessage(baseUrl: string, body: unknown, opts: { key?: string | null; idempotencyKey?: string; raw?: string; timeoutMs?: number } = {}): Promise<Answer> {
  const headers = authorized(opts.key, { 'content-type': 'application/json' });
  if (opts.idempotencyKey !== undefined) headers['idempotency-key'] = opts.idempotencyKey;
  const response = await fetch(`${baseUrl}/v1/messages`, {
    method: 'POST',
    headers,
    body: opts.raw ?? JSON.stringify(body),
    signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
  });
  return answerOf(response);
}

/** DELETE /v1/messages/<id> with a query (`to` or `group`), as postMessage answers. */
export async function retractMessage(baseUrl: string, id: string, query: Record<string, string>, opts: { key?: string | null } = {}): Promise<Answer> {
  const search = new URLSearchParams(query).toString();
  const response = await fetch(`${baseUrl}/v1/messages/${encodeURIComponent(id)}${search ? `?${search}` : ''}`, {
    method: 'DELETE',
    headers: authorized(opts.key),
    signal: AbortSignal.timeout(10_000),
  });
  return answerOf(response);
}
