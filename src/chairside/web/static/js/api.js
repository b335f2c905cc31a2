// Talking to the server: JSON in and out, problem+json errors, the CSRF header for writes.
// The session itself is the HttpOnly cookie `cs_session`: this code never sees it.

export const events = new EventTarget();
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);
let csrf = '';

export function setCsrf(value) { csrf = value || ''; }

/** Headers every request needs; writes carry the CSRF value from sign-in or /me. */
export function headersFor(method, extra = {}) {
  const headers = new Headers(extra);
  if (!SAFE.has(method.toUpperCase()) && csrf) headers.set('X-CSRF-Token', csrf);
  return headers;
}

export class ApiError extends Error {
  constructor(status, problem = {}) {
    super(problem.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }

  /** The stable end of the problem type, e.g. "signed-in-elsewhere". */
  get code() {
    const type = this.problem.type || '';
    return type.includes('/') ? type.slice(type.lastIndexOf('/') + 1) : '';
  }
}

/** Turn a failed response into an ApiError; a 401 also tells the app (signed out, or taken over). */
export async function failure(response, { quiet401 = false } = {}) {
  let problem = {};
  try { problem = await response.json(); } catch { /* not JSON */ }
  const error = new ApiError(response.status, problem);
  if (response.status === 401 && !quiet401) events.dispatchEvent(new CustomEvent('unauthorized', { detail: error }));
  return error;
}

export async function api(path, { method = 'GET', json, signal, quiet401 = false } = {}) {
  const headers = headersFor(method, json === undefined ? {} : { 'Content-Type': 'application/json' });
  headers.set('Accept', 'application/json');
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, credentials: 'same-origin',
      body: json === undefined ? undefined : JSON.stringify(json),
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, { type: 'network', detail: String(error) });
  }
  if (!response.ok) throw await failure(response, { quiet401 });
  if (response.status === 204) return null;
  return response.json();
}

export const url = {
  thumbnail: (id) => `/api/v1/media/${id}/thumbnail`,
  content: (id) => `/api/v1/media/${id}/content`,
  display: (id) => `/api/v1/media/${id}/display`,
  zip: (ids) => `/api/v1/exports/zip?ids=${ids.join(',')}`,
};
