// Move mis-filed items to another patient: a sheet with a patient search (the same search as the search pane),
// then a confirmation naming both patients, then PATCH /api/v1/media/{id} {patient_id} for each (audited in
// both patients' histories). Items already moved stay moved when a later one fails: the sheet says how many.

import { api } from './api.js';
import { debounce, h, replace, trapFocus } from './dom.js';
import { fmtBirth, t } from './i18n.js';
import { messageFor } from './session.js';
import { toast } from './widgets.js';

/** Open the sheet in `host` for `items` of `patient`; `onMoved(ids, target)` gets the ids that moved. */
export function openMoveDialog(host, { patient, items, onMoved }) {
  const input = h('input', { id: 'move-search', type: 'search', autocomplete: 'off', spellcheck: 'false',
    placeholder: t('search.placeholder'), 'aria-controls': 'move-results' });
  const status = h('p', { class: 'hint', id: 'move-status', role: 'status' }, t('move.searchHint'));
  const list = h('ul', { class: 'patient-list move-results', id: 'move-results', 'aria-label': t('move.results') });
  const body = h('div', { class: 'move-body' },
    h('label', { for: 'move-search' }, t('move.to')), input, status, list);
  const cancel = h('button', { class: 'btn', type: 'button', id: 'move-cancel', onclick: () => close() }, t('common.cancel'));
  const actions = h('div', { class: 'sheet-actions' }, cancel);
  const dialog = h('div', { class: 'sheet move-sheet', id: 'move-dialog', role: 'dialog', 'aria-modal': 'true',
    'aria-labelledby': 'move-title' },
  h('h2', { id: 'move-title' }, t('move.title', { n: items.length })),
  h('p', { class: 'hint' }, t('move.from', { name: patient.name, chart: patient.chart_no })),
  body, actions);
  const backdrop = h('div', { class: 'backdrop' }, dialog);
  const release = trapFocus(dialog);
  let controller = null;
  const close = () => { controller?.abort(); backdrop.remove(); release(); };
  dialog.addEventListener('keydown', (e) => { e.stopPropagation(); if (e.key === 'Escape') close(); });

  const search = async () => {
    controller?.abort();
    controller = new AbortController();
    const q = input.value.trim();
    if (!q) { replace(list); status.textContent = t('move.searchHint'); return; }
    try {
      const found = await api(`/api/v1/patients?q=${encodeURIComponent(q)}&limit=20`, { signal: controller.signal });
      const others = found.items.filter((p) => p.id !== patient.id);
      status.textContent = others.length ? '' : t('search.none');
      replace(list, others.map((p) => h('li', {}, h('button', { class: 'patient-card move-target', type: 'button',
        dataset: { id: p.id }, onclick: () => confirm(p) },
      h('span', { class: 'chart' }, p.chart_no),
      h('span', { class: 'who' }, h('span', { class: 'name' }, p.name), h('span', { class: 'kana' }, p.name_kana)),
      h('span', { class: 'meta' }, fmtBirth(p.birth_date))))));
    } catch (e) {
      if (e.name !== 'AbortError') status.textContent = messageFor(e);
    }
  };
  input.addEventListener('input', debounce(search, 180));

  const confirm = (target) => {
    const go = h('button', { class: 'btn primary', type: 'button', id: 'move-confirm', onclick: async () => {
      go.disabled = true;
      const moved = [];
      let failure = null; // the others are still moved: one item deleted meanwhile does not hold them back
      for (const item of items) {
        try {
          await api(`/api/v1/media/${item.id}`, { method: 'PATCH', json: { patient_id: target.id } });
          moved.push(item.id);
        } catch (err) {
          failure = failure || err;
        }
      }
      if (!failure) {
        close();
        toast(t('move.done', { n: moved.length, name: target.name }));
      } else {
        replace(question, messageFor(failure), moved.length ? ` ${t('move.partly', { n: moved.length })}` : '');
        replace(actions, h('button', { class: 'btn', type: 'button', id: 'move-close', onclick: () => close() }, t('common.close')));
        actions.firstChild.focus();
      }
      if (moved.length) onMoved(moved, target);
    } }, t('move.confirm'));
    const question = h('p', { class: 'move-question', id: 'move-question', role: 'alert' },
      t('move.question', { n: items.length, from: patient.name, to: `${target.name}（${target.chart_no}）` }));
    replace(body, question);
    replace(actions,
      h('button', { class: 'btn', type: 'button', id: 'move-back', onclick: () => {
        replace(body, h('label', { for: 'move-search' }, t('move.to')), input, status, list);
        replace(actions, cancel);
        input.focus();
      } }, t('move.back')),
      go);
    go.focus();
  };
  host.append(backdrop);
  input.focus();
}
