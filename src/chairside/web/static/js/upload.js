// Importing photos and videos: from the camera roll (phone, tablet) or many files at once (PC, by
// choosing or dragging), each one a resumable tus upload with its own progress, two at a time.

import { h, replace } from './dom.js';
import { fmtBytes, t } from './i18n.js';
import { icon } from './icons.js';
import { messageFor } from './session.js';
import { TusUpload } from './tus.js';

const PARALLEL = 2;

export class Uploader {
  constructor({ onDone }) {
    this.onDone = onDone;
    this.queue = [];
    this.running = 0;
    this.patient = null;
    this.input = h('input', { id: 'file-input', type: 'file', accept: 'image/*,video/*', multiple: true,
      class: 'visually-hidden', onchange: () => { this.add([...this.input.files]); this.input.value = ''; } });
    this.list = h('ul', { class: 'queue', 'aria-live': 'polite' });
    this.summary = h('span', { class: 'summary' });
    this.target = h('p', { class: 'for' });
    this.el = h('section', { class: 'imports', id: 'imports', hidden: true, 'aria-labelledby': 'imports-title' },
      h('header', {},
        h('h2', { id: 'imports-title' }, t('import.title')), this.summary,
        h('button', { class: 'btn icon-btn', type: 'button', 'aria-label': t('common.close'), title: t('common.close'),
          onclick: () => this.hide() }, icon('close'))),
      this.target,
      h('div', { class: 'picker' },
        h('label', { class: 'btn primary big', for: 'file-input' }, icon('upload'), h('span', {}, t('import.choose'))),
        this.input,
        h('p', { class: 'drop-hint' }, t('import.dropHint'))),
      this.list);
    this.acceptDrops(this.el);
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
    this.el.querySelector('label.btn').focus();
  }

  hide() { this.el.hidden = true; }

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
    for (const file of files) {
      const entry = { file, patient, capturedAt, state: 'queued', sent: 0, error: '', upload: null };
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
  }

  cancel(entry) {
    entry.state = 'cancelled';
    entry.upload?.cancel();
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
      fingerprint: `${patient.id}:${file.name}:${file.size}:${file.lastModified}`,
      chunkSize: Number(localStorage.getItem('chairside.uploadChunkBytes')) || 0,
      onProgress: (sent) => { entry.sent = sent; this.paint(entry); },
      onState: (state) => { if (entry.state !== 'cancelled') { entry.state = state; this.paint(entry); } },
    });
    try {
      const mediaId = await entry.upload.start();
      entry.state = 'done';
      entry.sent = file.size;
      entry.row.dataset.mediaId = mediaId;
      this.onDone(mediaId, patient.id);
    } catch (e) {
      if (entry.state !== 'cancelled') {
        entry.state = 'error';
        entry.error = e.name === 'AbortError' ? t('import.cancelled') : messageFor(e);
      }
      entry.upload = null;
    } finally {
      this.running -= 1;
      this.paint(entry);
      this.pump();
    }
  }
}
