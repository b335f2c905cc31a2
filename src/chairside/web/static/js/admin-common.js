// Pieces shared by the admin screens (admin.js): a sheet over the admin panel, the clinic scope as text, the
// clinic scope picker ("every clinic" or some of them) and the sheet that saves it.

import { api } from './api.js';
import { h, trapFocus } from './dom.js';
import { t } from './i18n.js';
import { toast } from './widgets.js';

/** A dialog sheet over the admin panel; `close()` takes it away and gives the focus back. */
export function sheet(id, title, ...content) {
  const dialog = h('div', { class: 'sheet admin-sheet', id, role: 'dialog', 'aria-modal': 'true',
    'aria-labelledby': `${id}-title` }, h('h2', { id: `${id}-title` }, title), ...content);
  const backdrop = h('div', { class: 'backdrop admin-sheet-backdrop' }, dialog);
  const release = trapFocus(dialog);
  const close = () => { backdrop.remove(); release(); };
  dialog.addEventListener('keydown', (e) => { e.stopPropagation(); if (e.key === 'Escape') close(); });
  document.body.append(backdrop);
  const first = dialog.querySelector('input:not([disabled]), select, button.primary, button');
  if (first) first.focus();
  return { dialog, close };
}

/** "Every clinic", or the names of the clinics in `scope` (a list of ids). */
export function scopeText(scope, clinics) {
  if (scope === null || scope === undefined) return t('admin.scope.all');
  return scope.map((id) => clinics.find((c) => c.id === id)?.name || id.slice(0, 8)).join('、');
}

/** The clinic checkboxes; `value()` is null for every clinic, else the ids ticked. */
export function scopePicker(scope, clinics, idPrefix) {
  const all = h('input', { type: 'checkbox', id: `${idPrefix}-all`, checked: scope === null || scope === undefined });
  const boxes = clinics.map((c) => h('input', { type: 'checkbox', id: `${idPrefix}-${c.id}`, value: c.id,
    checked: Array.isArray(scope) && scope.includes(c.id) }));
  const sync = () => { for (const box of boxes) box.disabled = all.checked; };
  all.addEventListener('change', sync);
  sync();
  const el = h('fieldset', { class: 'admin-scope' },
    h('legend', {}, t('admin.scope.legend')),
    h('label', { class: 'admin-check' }, all, h('span', {}, t('admin.scope.all'))),
    clinics.map((c, i) => h('label', { class: 'admin-check' }, boxes[i], h('span', {}, c.name))));
  return { el, value: () => (all.checked ? null : boxes.filter((b) => b.checked).map((b) => b.value)) };
}

/** The sheet that chooses the clinics an account or a station sees and PUTs them to `url`; `done()` after saving. */
export function scopeSheet(id, name, scope, clinics, url, { messageFor, done }) {
  const picker = scopePicker(scope, clinics, `${id}-pick`);
  const error = h('p', { class: 'form-error', id: `${id}-error`, role: 'alert' });
  const save = h('button', { class: 'btn primary', type: 'submit', id: `${id}-save` }, t('common.save'));
  const form = h('form', { class: 'admin-form' }, picker.el, error, h('div', { class: 'sheet-actions' },
    h('button', { class: 'btn', type: 'button', onclick: () => close() }, t('common.cancel')), save));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    save.disabled = true;
    try {
      await api(url, { method: 'PUT', json: { clinic_ids: picker.value() } });
      close();
      toast(t('admin.scope.done'));
      await done();
    } catch (err) {
      error.textContent = messageFor(err);
      save.disabled = false;
    }
  });
  const { close } = sheet(id, t('admin.scope.title', { name }), form);
}

/** A confirmation sheet; `run()` does the work (its error is shown in the sheet, which stays open). */
export function confirmSheet(id, title, question, confirmLabel, run, { danger = true, messageFor }) {
  const message = h('p', { id: `${id}-question`, role: 'alert' }, question);
  const go = h('button', { class: `btn primary${danger ? ' danger' : ''}`, type: 'button', id: `${id}-confirm`,
    onclick: async () => {
      go.disabled = true;
      try {
        await run();
        close();
      } catch (err) {
        message.textContent = messageFor(err);
        go.disabled = false;
      }
    } }, confirmLabel);
  const { close } = sheet(id, title, message, h('div', { class: 'sheet-actions' },
    h('button', { class: 'btn', type: 'button', id: `${id}-cancel`, onclick: () => close() }, t('common.cancel')), go));
  go.focus();
}
