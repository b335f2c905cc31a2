// Notes: free text on an item (from the viewer) or on a patient (under the name on the timeline), read and
// saved through GET/PUT /api/v1/{media|patients}/{id}/note. The server keeps the rules (NFC, at most 2000
// characters, no control characters; "" clears) and answers problem+json, shown in the sheet as it comes.

import { api } from './api.js';
import { h, replace, trapFocus } from './dom.js';
import { fmtDateTime, t } from './i18n.js';
import { icon } from './icons.js';
import { messageFor } from './session.js';
import { toast } from './widgets.js';

export const MAX_CHARS = 2000;

const path = (kind, id) => `/api/v1/${kind === 'patient' ? 'patients' : 'media'}/${id}/note`;

export function loadNote(kind, id) {
  return api(path(kind, id)).catch(() => ({ text: '', updated_at: null, author_name: '' }));
}

function byline(note) {
  return note.updated_at ? t('notes.updated', { when: fmtDateTime(note.updated_at), who: note.author_name || '—' }) : '';
}

/** The note sheet; `onSaved(note)` gets the stored note. `note` may be given (already loaded). */
export async function openNoteSheet(host, { kind, id, title, note = null, onSaved = () => {} }) {
  const current = note || await loadNote(kind, id);
  const area = h('textarea', { id: 'note-text', rows: 8, maxlength: MAX_CHARS, 'aria-describedby': 'note-count note-by' });
  area.value = current.text;
  const count = h('span', { class: 'note-count', id: 'note-count', 'aria-live': 'polite' });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const paintCount = () => { count.textContent = t('notes.count', { n: area.value.length, max: MAX_CHARS }); };
  area.addEventListener('input', paintCount);
  const dialog = h('form', { class: 'sheet note-sheet', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'note-title',
    id: 'note-sheet', dataset: { kind } },
  h('h2', { id: 'note-title' }, title || t(kind === 'patient' ? 'notes.patientTitle' : 'notes.itemTitle')),
  h('label', { for: 'note-text' }, t('notes.label')), area,
  h('div', { class: 'note-meta' }, count, h('span', { id: 'note-by' }, byline(current))),
  h('p', { class: 'hint' }, t('notes.hint')),
  error,
  h('div', { class: 'sheet-actions' },
    h('button', { class: 'btn', type: 'button', onclick: () => close() }, t('common.cancel')),
    h('button', { class: 'btn primary', type: 'submit', id: 'note-save' }, t('common.save'))));
  const backdrop = h('div', { class: 'backdrop' }, dialog);
  const release = trapFocus(dialog);
  const close = () => { backdrop.remove(); release(); };
  dialog.addEventListener('keydown', (e) => { e.stopPropagation(); if (e.key === 'Escape') close(); });
  dialog.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const saved = await api(path(kind, id), { method: 'PUT', json: { text: area.value } });
      onSaved(saved);
      close();
      toast(saved.text ? t('notes.saved') : t('notes.cleared'));
    } catch (err) {
      error.hidden = false;
      error.textContent = messageFor(err); // the sheet stays open and filled in
    }
  });
  paintCount();
  host.append(backdrop);
  area.focus();
}

/** The patient's note under the name on the timeline: its text (a few lines) and an edit button. */
export function patientNote(patient) {
  const body = h('p', { class: 'patient-note-text', id: 'patient-note-text' });
  const button = h('button', { class: 'btn small', type: 'button', id: 'patient-note-edit' });
  const el = h('div', { class: 'patient-note', dataset: { empty: '1' } }, body, button);
  const paint = (note) => {
    el.dataset.empty = note.text ? '' : '1';
    body.textContent = note.text;
    body.title = byline(note);
    replace(button, icon('text', { size: 18 }), h('span', {}, t(note.text ? 'notes.edit' : 'notes.add')));
    button.onclick = () => openNoteSheet(document.body, { kind: 'patient', id: patient.id, note,
      title: t('notes.patientTitleNamed', { name: patient.name }), onSaved: paint });
  };
  paint({ text: '', updated_at: null, author_name: '' });
  loadNote('patient', patient.id).then(paint);
  return el;
}

/** The viewer's note button for an item: marked when the item has a note. */
export function noteButton(item, host) {
  let note = null;
  const button = h('button', { class: 'btn icon-btn note-btn', type: 'button', id: 'note-button',
    'aria-label': t('notes.itemTitle'), title: t('notes.itemTitle') }, icon('text'));
  const paint = (n) => {
    note = n;
    button.dataset.hasNote = n.text ? '1' : '';
    button.setAttribute('aria-label', n.text ? `${t('notes.itemTitle')}: ${n.text.slice(0, 60)}` : t('notes.itemTitle'));
  };
  button.addEventListener('click', () => openNoteSheet(host, { kind: 'media', id: item.id, note, onSaved: paint }));
  loadNote('media', item.id).then(paint);
  return button;
}
