// Merge flags (issue 16 §2): one chart number registered at two relays while the internet was down. A banner
// says how many wait (GET /api/v1/merge-flags); its button opens a sheet with each pair side by side (name,
// kana, birth date, chart number, clinic, photos and videos) and, per pair, 統合する (the same person:
// POST /api/v1/patients/{id}/merge {into}, after a confirmation naming both) or 別人として残す (another person:
// POST /api/v1/patients/{id}/keep-apart {chart_number}). The server's problem+json is shown as it comes.
// Where the server has no such route (a relay: merges are made at the cloud), the banner stays hidden.

import { api } from './api.js';
import { h, replace, trapFocus } from './dom.js';
import { fmtBirth, fmtDay, t } from './i18n.js';
import { messageFor } from './session.js';
import { toast } from './widgets.js';

/** Fill `slot` with the banner when flags wait (hidden otherwise); answers the flags. */
export async function renderMergeBanner(slot, { clinicName = () => '', onResolved = () => {} } = {}) {
  let flags;
  try {
    flags = (await api('/api/v1/merge-flags', { quiet401: true })).items;
  } catch {
    flags = [];
  }
  if (!flags.length) {
    slot.hidden = true;
    replace(slot);
    return flags;
  }
  slot.className = 'banner warn merge-banner';
  slot.hidden = false;
  slot.dataset.count = String(flags.length);
  const refresh = () => renderMergeBanner(slot, { clinicName, onResolved });
  replace(slot,
    h('span', { class: 'banner-text', id: 'merge-banner-text' }, t('merge.banner', { n: flags.length })),
    h('button', { class: 'btn', type: 'button', id: 'merge-open', onclick: () => openMergeSheet(document.body, {
      flags, clinicName, onResolved: (patient) => { onResolved(patient); refresh(); },
    }) }, t('merge.open')));
  return flags;
}

function card(patient, items, { label, clinicName, role }) {
  return h('div', { class: `merge-card ${role}`, dataset: { id: patient.id } },
    h('p', { class: 'merge-label' }, label),
    h('p', { class: 'merge-name' }, patient.name),
    h('p', { class: 'kana' }, patient.name_kana),
    h('dl', {},
      h('dt', {}, t('merge.chart')), h('dd', { class: 'merge-chart' }, patient.chart_no),
      h('dt', {}, t('merge.birth')), h('dd', {}, fmtBirth(patient.birth_date) || t('merge.none')),
      h('dt', {}, t('merge.clinic')), h('dd', {}, clinicName(patient.clinic_id) || '—'),
      h('dt', {}, t('merge.registered')), h('dd', {}, fmtDay(patient.created_at)),
      h('dt', {}, t('merge.items')), h('dd', { class: 'merge-items' }, t('merge.itemCount', { n: items }))));
}

/** The sheet listing `flags`; `onResolved(keptOrSeparate)` after each merge or keep-apart. */
export function openMergeSheet(host, { flags, clinicName = () => '', onResolved = () => {} }) {
  const list = h('div', { class: 'merge-list', id: 'merge-list' });
  const closeBtn = h('button', { class: 'btn', type: 'button', id: 'merge-close', onclick: () => close() },
    t('common.close'));
  const dialog = h('div', { class: 'sheet merge-sheet', id: 'merge-dialog', role: 'dialog', 'aria-modal': 'true',
    'aria-labelledby': 'merge-title' },
  h('h2', { id: 'merge-title' }, t('merge.title')),
  h('p', { class: 'hint' }, t('merge.explain')),
  list,
  h('div', { class: 'sheet-actions' }, closeBtn));
  const backdrop = h('div', { class: 'backdrop' }, dialog);
  const release = trapFocus(dialog);
  const close = () => { backdrop.remove(); release(); };
  dialog.addEventListener('keydown', (e) => { e.stopPropagation(); if (e.key === 'Escape') close(); });

  const remaining = () => {
    if (!list.querySelector('.merge-pair')) replace(list, h('p', { class: 'hint', id: 'merge-empty' }, t('merge.empty')));
  };

  const pair = (flag) => {
    const { patient, other } = flag;
    const error = h('p', { class: 'form-error merge-error', role: 'alert' });
    const actions = h('div', { class: 'sheet-actions merge-actions' });
    const section = h('section', { class: 'merge-pair', dataset: { id: patient.id },
      'aria-label': t('merge.pairLabel', { chart: patient.chart_no }) },
    h('div', { class: 'merge-cards' },
      card(patient, flag.patient_items, { label: t('merge.later'), clinicName, role: 'flagged' }),
      other ? card(other, flag.other_items, { label: t('merge.earlier'), clinicName, role: 'other' })
        : h('div', { class: 'merge-card other' }, h('p', { class: 'hint' }, t('merge.otherHidden')))),
    error, actions);
    const done = (message, resolved) => {
      section.remove();
      remaining();
      toast(message);
      onResolved(resolved);
    };
    const fail = (e, button) => { error.textContent = messageFor(e); if (button) button.disabled = false; };

    const choose = () => {
      error.textContent = '';
      replace(actions,
        h('button', { class: 'btn', type: 'button', 'data-action': 'keep-apart', onclick: keepApart },
          t('merge.keepApart')),
        other ? h('button', { class: 'btn primary', type: 'button', 'data-action': 'merge', onclick: confirmMerge },
          t('merge.merge')) : null);
    };

    const confirmMerge = () => {
      error.textContent = '';
      const go = h('button', { class: 'btn primary', type: 'button', 'data-action': 'merge-confirm', onclick: async () => {
        go.disabled = true;
        try {
          const result = await api(`/api/v1/patients/${patient.id}/merge`, { method: 'POST', json: { into: other.id } });
          done(t('merge.merged', { name: result.patient.name, n: result.moved_items }), result.patient);
        } catch (e) { fail(e, go); }
      } }, t('merge.merge'));
      replace(actions,
        h('p', { class: 'move-question merge-question', role: 'alert' }, t('merge.question', {
          from: `${patient.name}（${patient.chart_no}）`, to: `${other.name}（${other.chart_no}）`, n: flag.patient_items })),
        h('button', { class: 'btn', type: 'button', onclick: choose }, t('common.cancel')), go);
      go.focus();
    };

    const keepApart = () => {
      error.textContent = '';
      const id = `merge-chart-${patient.id}`;
      const input = h('input', { id, type: 'text', inputmode: 'text', autocomplete: 'off', maxlength: '40',
        required: true, 'data-field': 'chart-number' });
      const save = h('button', { class: 'btn primary', type: 'submit', 'data-action': 'keep-apart-save' }, t('merge.keepApartSave'));
      const form = h('form', { class: 'merge-keep' },
        h('label', { for: id }, t('merge.newChart')),
        h('p', { class: 'hint' }, t('merge.newChartHint', { name: patient.name })),
        input,
        h('div', { class: 'sheet-actions' }, h('button', { class: 'btn', type: 'button', onclick: choose }, t('common.cancel')), save));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const chart = input.value.trim();
        if (!chart) { error.textContent = t('merge.chartRequired'); input.focus(); return; }
        save.disabled = true;
        try {
          const kept = await api(`/api/v1/patients/${patient.id}/keep-apart`, { method: 'POST',
            json: { chart_number: chart } });
          done(t('merge.keptApart', { name: kept.name, chart: kept.chart_no }), kept);
        } catch (err) { fail(err, save); input.focus(); }
      });
      replace(actions, form);
      input.focus();
    };

    choose();
    return section;
  };

  replace(list, flags.map(pair));
  remaining();
  host.append(backdrop);
  (list.querySelector('button') || closeBtn).focus();
}
