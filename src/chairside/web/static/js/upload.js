// Importing photos and videos: from the camera roll (phone, tablet) or many files at once (PC, by
// choosing or dragging), each one a resumable tus upload with its own progress, two at a time.
//
// An import cut by a reload, a closed tab or a crash is remembered in localStorage (the file's name,
// size, patient and how far it got) next to the tus client's own record of the upload's address.
// After a reload it is listed as interrupted; the browser may not read a file again without the user
// choosing it, so one tap on Resume opens the picker, and the same file carries on from the server's
// offset (a HEAD, not a new upload). While files are sending, the panel can shrink to a chip.

import { headersFor } from './api.js';
import { h, replace } from './dom.js';
import { fmtBytes, t } from './i18n.js';
import { icon } from './icons.js';
import { messageFor } from './session.js';
import { TusUpload } from './tus.js';
import { toast } from './widgets.js';

const PARALLEL = 2;
const PENDING = 'chairside.pendingImport.'; // + account id + '.' + fingerprint: one account never sees another's
const TUS_STORE = 'chairside.tus.'; // tus.js keeps each upload's address under this prefix + fingerprint
const NARROW = '(max-width: 899px)'; // one pane: the panel would cover the tiles, so it shrinks to a chip

const fingerprintOf = (patientId, file) => `${patientId}:${file.name}:${file.size}:${file.lastModified}`;

function pendingRecords(prefix) {
  const found = [];
  for (let i = localStorage.length - 1; i >= 0; i -= 1) {
    const key = localStorage.key(i);
    if (!key?.startsWith(prefix)) continue;
    try {
      const record = JSON.parse(localStorage.getItem(key));
      if (localStorage.getItem(TUS_STORE + record.fingerprint)) found.push(record);
      else localStorage.removeItem(key); // the upload itself is gone: nothing to resume
    } catch { localStorage.removeItem(key); }
  }
  return found.sort((a, b) => (a.name < b.name ? -1 : 1));
}

export class Uploader {
  constructor({ onDone, accountId = '' }) {
    this.onDone = onDone;
    this.pendingPrefix = `${PENDING}${accountId}.`;
    this.queue = [];
    this.running = 0;
    this.patient = null;
    this.input = h('input', { id: 'file-input', type: 'file', accept: 'image/*,video/*', multiple: true,
      class: 'visually-hidden', onchange: () => { this.add([...this.input.files]); this.input.value = ''; } });
    this.list = h('ul', { class: 'queue', 'aria-live': 'polite' });
    this.pendingList = h('ul', { class: 'queue pending', id: 'pending-imports' });
    this.pendingTitle = h('h3', { class: 'pending-title', hidden: true }, t('import.pending'));
    this.summary = h('span', { class: 'summary' });
    this.chipText = h('span', {});
    this.chipBar = h('progress', { max: 100, value: 0, 'aria-hidden': 'true' });
    this.chip = h('button', { class: 'import-chip', type: 'button', id: 'import-chip', 'aria-label': t('import.open'),
      onclick: () => this.show() }, icon('upload', { size: 18 }), this.chipText, this.chipBar);
    this.target = h('p', { class: 'for' });
    this.el = h('section', { class: 'imports', id: 'imports', hidden: true, 'aria-labelledby': 'imports-title' },
      h('header', {},
        h('h2', { id: 'imports-title' }, t('import.title')), this.summary,
        h('button', { class: 'btn icon-btn', type: 'button', id: 'imports-close', 'aria-label': t('common.close'),
          title: t('common.close'), onclick: () => (this.busy() ? this.minimise() : this.hide()) }, icon('close'))),
      this.target,
      h('div', { class: 'picker' },
        h('label', { class: 'btn primary big', for: 'file-input' }, icon('upload'), h('span', {}, t('import.choose'))),
        this.input,
        h('p', { class: 'drop-hint' }, t('import.dropHint'))),
      this.pendingTitle, this.pendingList,
      this.list, this.chip);
    this.acceptDrops(this.el);
    this.listPending();
    window.addEventListener('beforeunload', (e) => { if (this.busy()) { e.preventDefault(); e.returnValue = ''; } });
  }

  busy() { return this.queue.some((q) => ['queued', 'uploading', 'retrying', 'finishing'].includes(q.state)); }

  setPatient(patient) {
    this.patient = patient;
    this.target.textContent = patient ? t('import.for', { name: patient.name, chart: patient.chart_no }) : t('import.noPatient');
    this.input.disabled = !patient;
  }

  show() {
    this.el.hidden = false;
    this.el.classList.remove('mini');
    this.el.querySelector('label.btn').focus();
  }

  hide() { this.el.hidden = true; this.el.classList.remove('mini'); }

  /** Out of the way while sending: a chip with the overall progress; a tap opens the panel again. */
  minimise() {
    this.el.hidden = false;
    this.el.classList.add('mini');
    this.paintChip();
  }

  paintChip() {
    const live = this.queue.filter((q) => q.state !== 'cancelled');
    const total = live.reduce((sum, q) => sum + q.file.size, 0);
    const sent = live.reduce((sum, q) => sum + (q.state === 'done' ? q.file.size : q.sent), 0);
    const done = live.filter((q) => q.state === 'done').length;
    this.chipText.textContent = t('import.summary', { done, total: live.length });
    this.chipBar.value = total ? Math.floor((sent / total) * 100) : 0;
    this.el.dataset.done = String(done);
  }

  /** The imports a reload (or a crash) cut short, each with a Resume that asks for the same file again. */
  listPending() {
    const records = pendingRecords(this.pendingPrefix).filter((r) => !this.queue.some((q) => q.fingerprint === r.fingerprint));
    replace(this.pendingList, records.map((record) => this.pendingRow(record)));
    this.pendingTitle.hidden = !records.length;
    if (records.length && this.el.hidden) this.show();
  }

  pendingRow(record) {
    const pct = record.size ? Math.floor((record.sent / record.size) * 100) : 0;
    const input = h('input', { type: 'file', class: 'visually-hidden', accept: record.type || 'image/*,video/*',
      'aria-label': record.name, onchange: () => {
        const file = input.files[0];
        input.value = '';
        if (!file) return;
        if (fingerprintOf(record.patient.id, file) !== record.fingerprint) {
          toast(t('import.notSameFile', { name: record.name }), { kind: 'error' });
          return;
        }
        this.add([file], record.patient, { capturedAt: record.capturedAt ? new Date(record.capturedAt) : null });
        this.listPending();
      } });
    return h('li', { class: 'q-item state-interrupted', dataset: { state: 'interrupted', fingerprint: record.fingerprint } },
      h('span', { class: 'q-name' }, icon(record.type?.startsWith('video') ? 'video' : 'photo', { size: 18 }),
        h('span', {}, record.name)),
      h('progress', { max: 100, value: pct, 'aria-label': record.name }),
      h('span', { class: 'q-status' }, t('import.interrupted', { pct, name: record.patient.name })),
      h('span', { class: 'q-action' },
        h('button', { class: 'btn small primary resume', type: 'button', onclick: () => input.click() }, t('import.resume')),
        h('button', { class: 'btn small ghost discard', type: 'button', onclick: () => this.discard(record) },
          t('import.discard')),
        input));
  }

  discard(record) {
    const saved = JSON.parse(localStorage.getItem(TUS_STORE + record.fingerprint) || 'null');
    if (saved?.url) {
      fetch(saved.url, { method: 'DELETE', credentials: 'same-origin',
        headers: headersFor('DELETE', { 'Tus-Resumable': '1.0.0' }) }).catch(() => {});
    }
    localStorage.removeItem(TUS_STORE + record.fingerprint);
    localStorage.removeItem(this.pendingPrefix + record.fingerprint);
    this.listPending();
  }

  acceptDrops(zone) {
    zone.addEventListener('dragover', (e) => {
      if (!this.patient || ![...e.dataTransfer.types].includes('Files')) return;
      e.preventDefault();
      zone.classList.add('dragging');
    });
    zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
    zone.addEventListener('drop', (e) => {
      zone.classList.remove('dragging');
      if (!this.patient || !e.dataTransfer.files.length) return;
      e.preventDefault();
      this.add([...e.dataTransfer.files]);
    });
  }

  /** Queue files for the current patient; a file that is neither photo nor video is refused here. */
  add(files, patient = this.patient, { capturedAt = null } = {}) {
    if (!patient) return;
    this.show();
    if (window.matchMedia?.(NARROW).matches) this.minimise();
    for (const file of files) {
      const entry = { file, patient, capturedAt, state: 'queued', sent: 0, error: '', upload: null,
        fingerprint: fingerprintOf(patient.id, file) };
      entry.row = this.row(entry);
      this.list.prepend(entry.row);
      if (file.type && !/^(image|video)\//.test(file.type)) {
        entry.state = 'error';
        entry.error = t('import.notMedia');
      } else {
        this.queue.push(entry);
      }
      this.paint(entry);
    }
    this.pump();
  }

  row(entry) {
    const row = h('li', { class: 'q-item' });
    row.append(
      h('span', { class: 'q-name' }, icon(entry.file.type.startsWith('video') ? 'video' : 'photo', { size: 18 }),
        h('span', {}, entry.file.name)),
      h('progress', { max: 100, value: 0, 'aria-label': entry.file.name }),
      h('span', { class: 'q-status' }),
      h('button', { class: 'btn small q-action', type: 'button' }));
    return row;
  }

  paint(entry) {
    const { row } = entry;
    const pct = entry.file.size ? Math.floor((entry.sent / entry.file.size) * 100) : 0;
    row.className = `q-item state-${entry.state}`;
    row.dataset.state = entry.state;
    row.querySelector('progress').value = entry.state === 'done' ? 100 : pct;
    const status = {
      queued: t('import.queued'),
      uploading: t('import.uploading', { pct, size: fmtBytes(entry.file.size) }),
      finishing: t('import.finishing'),
      retrying: t('import.retrying', { pct }),
      done: t('import.done'),
      error: entry.error,
      cancelled: t('import.cancelled'),
    }[entry.state];
    row.querySelector('.q-status').textContent = status;
    const action = row.querySelector('.q-action');
    if (['queued', 'uploading', 'retrying', 'finishing'].includes(entry.state)) {
      replace(action, t('common.cancel'));
      action.onclick = () => this.cancel(entry);
      action.hidden = false;
    } else if (entry.state === 'error' && this.queue.includes(entry)) {
      replace(action, t('import.retry'));
      action.onclick = () => { entry.state = 'queued'; entry.error = ''; this.paint(entry); this.pump(); };
      action.hidden = false;
    } else {
      action.hidden = true;
    }
    const done = this.queue.filter((q) => q.state === 'done').length;
    this.summary.textContent = this.queue.length ? t('import.summary', { done, total: this.queue.length }) : '';
    if (this.el.classList.contains('mini')) this.paintChip();
  }

  /** Remember how far an import got, so that a reload can list it and resume it. */
  remember(entry) {
    const { file, patient } = entry;
    localStorage.setItem(this.pendingPrefix + entry.fingerprint, JSON.stringify({
      fingerprint: entry.fingerprint, name: file.name, size: file.size, type: file.type, sent: entry.sent,
      capturedAt: entry.capturedAt ? entry.capturedAt.toISOString() : null,
      patient: { id: patient.id, name: patient.name, chart_no: patient.chart_no },
    }));
  }

  forget(entry) { localStorage.removeItem(this.pendingPrefix + entry.fingerprint); }

  cancel(entry) {
    entry.state = 'cancelled';
    entry.upload?.cancel();
    this.forget(entry);
    this.paint(entry);
  }

  pump() {
    while (this.running < PARALLEL) {
      const next = this.queue.find((q) => q.state === 'queued');
      if (!next) return;
      this.run(next);
    }
  }

  async run(entry) {
    this.running += 1;
    entry.state = 'uploading';
    this.paint(entry);
    const { file, patient } = entry;
    const metadata = { patient_id: patient.id, filename: file.name };
    // Photos carry their own capture time (EXIF), which the server reads; for a video the file's date is
    // the best the browser knows. A saved video frame names the moment of the frame.
    if (entry.capturedAt) metadata.captured_at = entry.capturedAt.toISOString();
    else if (file.type.startsWith('video') && file.lastModified) metadata.captured_at = new Date(file.lastModified).toISOString();
    entry.upload = entry.upload || new TusUpload(file, {
      metadata,
      fingerprint: entry.fingerprint,
      chunkSize: Number(localStorage.getItem('chairside.uploadChunkBytes')) || 0,
      onProgress: (sent) => { entry.sent = sent; this.paint(entry); if (sent < file.size) this.remember(entry); },
      onState: (state) => { if (entry.state !== 'cancelled') { entry.state = state; this.paint(entry); } },
    });
    try {
      const mediaId = await entry.upload.start();
      entry.state = 'done';
      entry.sent = file.size;
      entry.row.dataset.mediaId = mediaId;
      this.forget(entry);
      this.onDone(mediaId, patient.id);
    } catch (e) {
      if (entry.state !== 'cancelled') {
        entry.state = 'error';
        entry.error = e.name === 'AbortError' ? t('import.cancelled') : messageFor(e);
      }
      // Refused for good (the tus client forgot the upload): nothing left to resume after a reload.
      if (!localStorage.getItem(TUS_STORE + entry.fingerprint)) this.forget(entry);
      entry.upload = null;
    } finally {
      this.running -= 1;
      this.paint(entry);
      this.pump();
    }
  }
}
