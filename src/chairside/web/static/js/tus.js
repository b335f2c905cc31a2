// A small tus 1.0 client (creation, core PATCH/HEAD, checksum) on fetch.
//
// Each file is sent in chunks; after a network error or a retriable answer it asks the
// server for its offset (HEAD) and goes on from there, so a dropped connection costs at
// most one chunk. The upload's address is remembered (localStorage) under the file's
// fingerprint, so even a reload of the page resumes instead of starting again. The
// media id is made once per file: retrying can never store the same photo twice.

import { failure, headersFor } from './api.js';

const TUS = { 'Tus-Resumable': '1.0.0' };
const RETRIABLE = new Set([408, 409, 423, 425, 429, 460, 500, 502, 503, 504]);
const MIN_CHUNK = 256 * 1024;
const MAX_CHUNK = 32 * 1024 * 1024;
const TARGET_MS = 2500;
const STORE = 'chairside.tus.';

/** A UUIDv7 (time-ordered) from crypto.getRandomValues, which, unlike randomUUID, works on plain http too. */
export function uuid7() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  const ms = Date.now();
  for (let i = 0; i < 6; i += 1) bytes[i] = Math.floor(ms / 2 ** (8 * (5 - i))) & 0xff;
  bytes[6] = (bytes[6] & 0x0f) | 0x70;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function b64(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function b64bytes(buffer) {
  let binary = '';
  for (const b of new Uint8Array(buffer)) binary += String.fromCharCode(b);
  return btoa(binary);
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(timer); reject(new DOMException('cancelled', 'AbortError')); }, { once: true });
});

function whenOnline(signal) {
  if (navigator.onLine !== false) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => { window.removeEventListener('online', done); resolve(); };
    window.addEventListener('online', done);
    signal?.addEventListener('abort', () => reject(new DOMException('cancelled', 'AbortError')), { once: true });
  });
}

class Retry extends Error {}

export class TusUpload {
  /**
   * file: a File or Blob; metadata: Upload-Metadata values (patient_id, filename, …).
   * onProgress(sent, total); onState('uploading' | 'retrying' | 'finishing').
   */
  constructor(file, { endpoint = '/api/v1/uploads/', metadata = {}, fingerprint = '', chunkSize = 0,
    maxAttempts = 30, onProgress = () => {}, onState = () => {} } = {}) {
    this.file = file;
    this.endpoint = endpoint;
    this.fingerprint = fingerprint ? STORE + fingerprint : '';
    const saved = this.fingerprint ? JSON.parse(localStorage.getItem(this.fingerprint) || 'null') : null;
    this.mediaId = saved?.mediaId || uuid7();
    this.url = saved?.url || '';
    this.metadata = { ...metadata, media_id: this.mediaId };
    this.fixedChunk = chunkSize;
    this.chunk = chunkSize || 2 * 1024 * 1024;
    this.maxAttempts = maxAttempts;
    this.onProgress = onProgress;
    this.onState = onState;
    this.controller = new AbortController();
    this.offset = 0;
    this.attempts = 0;
    this.resumes = 0;
  }

  cancel() {
    this.controller.abort();
    if (this.url) {
      fetch(this.url, { method: 'DELETE', headers: headersFor('DELETE', TUS), credentials: 'same-origin' }).catch(() => {});
    }
    this.forget();
  }

  forget() { if (this.fingerprint) localStorage.removeItem(this.fingerprint); }

  remember() {
    if (this.fingerprint) localStorage.setItem(this.fingerprint, JSON.stringify({ url: this.url, mediaId: this.mediaId }));
  }

  async request(method, url, { headers = {}, body } = {}) {
    return fetch(url, {
      method, body, credentials: 'same-origin', signal: this.controller.signal,
      headers: headersFor(method, { ...TUS, ...headers }),
    });
  }

  async create() {
    const meta = Object.entries(this.metadata).filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => `${k} ${b64(String(v))}`).join(',');
    const response = await this.request('POST', this.endpoint, {
      headers: { 'Upload-Length': String(this.file.size), 'Upload-Metadata': meta },
    });
    if (response.status !== 201) {
      if (RETRIABLE.has(response.status) && response.status !== 409) throw new Retry(`create ${response.status}`);
      throw await failure(response);
    }
    this.url = new URL(response.headers.get('Location'), window.location.href).pathname;
    this.remember();
    return 0;
  }

  /** The server's offset; a forgotten or expired upload starts again (same media id). */
  async head() {
    const response = await this.request('HEAD', this.url, { headers: { 'Cache-Control': 'no-store' } });
    if (response.status === 404 || response.status === 410) {
      this.url = '';
      return this.create();
    }
    if (!response.ok) {
      if (RETRIABLE.has(response.status)) throw new Retry(`head ${response.status}`);
      throw await failure(response);
    }
    return Number(response.headers.get('Upload-Offset'));
  }

  async checksum(blob) {
    if (!globalThis.crypto?.subtle) return {}; // only in secure contexts (https, localhost)
    const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
    return { 'Upload-Checksum': `sha256 ${b64bytes(digest)}` };
  }

  async patch() {
    const end = Math.min(this.file.size, this.offset + this.chunk);
    const body = this.file.slice(this.offset, end);
    const started = performance.now();
    const response = await this.request('PATCH', this.url, {
      body,
      headers: {
        'Upload-Offset': String(this.offset), 'Content-Type': 'application/offset+octet-stream',
        ...(await this.checksum(body)),
      },
    });
    if (response.status === 204) {
      this.offset = Number(response.headers.get('Upload-Offset'));
      if (!this.fixedChunk) {
        const ms = Math.max(1, performance.now() - started);
        const next = this.chunk * Math.min(4, Math.max(0.25, TARGET_MS / ms));
        this.chunk = Math.round(Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, next)) / 65536) * 65536;
      }
      return;
    }
    if (response.status === 409 && response.headers.get('Upload-Offset')) {
      this.offset = Number(response.headers.get('Upload-Offset'));
      return;
    }
    if (RETRIABLE.has(response.status)) throw new Retry(`patch ${response.status}`);
    throw await failure(response);
  }

  /** Send the whole file; resolves with the media id once the server has stored the item. */
  async start() {
    const signal = this.controller.signal;
    const size = this.file.size;
    let needHead = Boolean(this.url);
    for (;;) {
      try {
        if (!this.url) this.offset = await this.create();
        else if (needHead) this.offset = await this.head();
        needHead = false;
        this.onState('uploading');
        this.onProgress(this.offset, size);
        while (this.offset < size) {
          if (this.offset + this.chunk >= size) this.onState('finishing');
          await this.patch();
          this.attempts = 0;
          this.onProgress(this.offset, size);
        }
        this.forget();
        return this.mediaId;
      } catch (error) {
        if (signal.aborted || error.name === 'AbortError') throw new DOMException('cancelled', 'AbortError');
        const network = error instanceof TypeError || error instanceof Retry;
        if (!network) { this.forget(); throw error; }
        this.attempts += 1;
        if (this.attempts > this.maxAttempts) throw error;
        this.resumes += 1;
        this.onState('retrying');
        await whenOnline(signal);
        await sleep(Math.min(10000, 400 * 2 ** Math.min(this.attempts - 1, 5)), signal);
        needHead = true;
      }
    }
  }
}
