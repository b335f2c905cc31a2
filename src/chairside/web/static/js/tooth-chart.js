// Tooth numbers: FDI two-digit numbers as stored (11–48 permanent, 51–85 deciduous), shown as FDI ("16") or,
// when the patient's clinic chose it, in the Japanese Zsigmondy–Palmer form ("6┘"); the rules are the server's
// (domain/teeth.py, docs/viewer.md). Here: the labels, the chips on items, the chart picker (upper and lower
// arches seen facing the patient, permanent or deciduous, touch-sized on a phone), and the timeline's filter.

import { api } from './api.js';
import { h, replace, trapFocus } from './dom.js';
import { getLang, t } from './i18n.js';
import { messageFor } from './session.js';
import { toast } from './widgets.js';

export const PERMANENT = [
  [18, 17, 16, 15, 14, 13, 12, 11, 21, 22, 23, 24, 25, 26, 27, 28],
  [48, 47, 46, 45, 44, 43, 42, 41, 31, 32, 33, 34, 35, 36, 37, 38],
];
export const DECIDUOUS = [
  [55, 54, 53, 52, 51, 61, 62, 63, 64, 65],
  [85, 84, 83, 82, 81, 71, 72, 73, 74, 75],
];
const VALID = new Set([...PERMANENT.flat(), ...DECIDUOUS.flat()]);
// quadrant folded onto 1–4 → [mark, mark after the tooth?, Japanese words, English words]
const SIDES = {
  1: ['┘', true, '右上', 'upper right'], 2: ['└', false, '左上', 'upper left'],
  3: ['┌', false, '左下', 'lower left'], 4: ['┐', true, '右下', 'lower right'],
};

export const isTooth = (n) => VALID.has(n);
const side = (n) => { const q = Math.floor(n / 10); return q > 4 ? q - 4 : q; };
const symbol = (n) => (n >= 50 ? 'ABCDE'[(n % 10) - 1] : String(n % 10));

/** "6┘" for 16, "└A" for 61: the Zsigmondy–Palmer form Japanese charts write. */
export function palmer(n) {
  const [mark, after] = SIDES[side(n)];
  return after ? symbol(n) + mark : mark + symbol(n);
}

/** The chip's text: "16" (FDI) or "6┘" (Zsigmondy–Palmer). */
export function toothLabel(n, notation = currentNotation) {
  return notation === 'palmer' ? palmer(n) : String(n);
}

/** For screen readers and tooltips: "右上6（16）" / "upper right 6 (16)". */
export function toothName(n) {
  const [, , ja, en] = SIDES[side(n)];
  return getLang() === 'en' ? `${en} ${symbol(n)} (${n})` : `${ja}${symbol(n)}（${n}）`;
}

// The notation of the patient on screen (their clinic's choice, GET /api/v1/clinics), set by the timeline.
let currentNotation = 'fdi';
export function useNotation(notation) { currentNotation = notation === 'palmer' ? 'palmer' : 'fdi'; }
export function notation() { return currentNotation; }

// Whoever shows items (the open timeline) hears of teeth saved in the viewer.
let savedListener = () => {};
export function onTeethSaved(fn) { savedListener = fn; }

/** Chips for an item's teeth (none: nothing). */
export function toothChips(teeth, { className = 'tooth-chips' } = {}) {
  if (!teeth || !teeth.length) return null;
  return h('span', { class: className, 'aria-label': `${t('teeth.label')}: ${teeth.map(toothName).join('、')}` },
    teeth.map((n) => h('span', { class: 'tooth-chip', 'aria-hidden': 'true', dataset: { tooth: String(n) } },
      toothLabel(n))));
}

/** The timeline's filter: the teeth on this patient's items, as a select (touch-friendly, like the tag filter). */
export function toothFilter(items, value, onChange) {
  const used = [...new Set(items.flatMap((m) => m.teeth || []))].sort((a, b) => a - b);
  if (!used.length) return null;
  return h('select', { id: 'filter-tooth', 'aria-label': t('teeth.filter'), onchange: (e) => onChange(e.target.value) },
    h('option', { value: '' }, t('teeth.all')),
    used.map((n) => h('option', { value: String(n), selected: String(value) === String(n), title: toothName(n) },
      `${toothLabel(n)}${currentNotation === 'palmer' ? ` (${n})` : ''}`)));
}

/** A tooth icon (24×24, stroke = currentColor) for the viewer's button. */
export function toothIcon() {
  const NS = 'http://www.w3.org/2000/svg'; // the SVG namespace's name: nothing is loaded from it
  const svg = document.createElementNS(NS, 'svg');
  for (const [k, v] of Object.entries({ viewBox: '0 0 24 24', width: 24, height: 24, class: 'icon icon-tooth',
    'aria-hidden': 'true' })) svg.setAttribute(k, v);
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', 'M7 3c-2.5 0-4 2-4 4.5 0 2.2 1 3.6 1.6 5.5.6 2 .9 8 2.9 8 1.8 0 1.7-5.5 4.5-5.5s2.7 5.5 '
    + '4.5 5.5c2 0 2.3-6 2.9-8 .6-1.9 1.6-3.3 1.6-5.5C21 5 19.5 3 17 3c-2 0-3 1.2-5 1.2S9 3 7 3z');
  svg.append(path);
  return svg;
}

/**
 * The chart picker for one item: `onSaved(id, teeth)` gets the stored set (PUT /api/v1/media/{id}/teeth).
 * Permanent or deciduous teeth (a mixed dentition: both, one tab at a time; the choice is kept across tabs).
 */
export function openToothChart(host, item, { onSaved = () => {} } = {}) {
  const chosen = new Set(item.teeth || []);
  let set = (item.teeth || []).some((n) => n >= 50) && !(item.teeth || []).some((n) => n < 50) ? 'deciduous' : 'permanent';
  const summary = h('p', { class: 'tooth-summary', id: 'tooth-summary', 'aria-live': 'polite' });
  const chart = h('div', { class: 'tooth-chart', role: 'group', 'aria-label': t('teeth.chart') });
  const tabs = h('div', { class: 'seg', role: 'group', 'aria-label': t('teeth.dentition') });

  const paintSummary = () => {
    const list = [...chosen].sort((a, b) => a - b);
    replace(summary, list.length ? [h('span', {}, t('teeth.chosen', { n: list.length })), ' ', toothChips(list)]
      : t('teeth.none'));
  };
  const toothButton = (n) => h('button', { type: 'button', class: 'tooth', 'aria-pressed': String(chosen.has(n)),
    'aria-label': toothName(n), title: toothName(n), dataset: { tooth: String(n) }, onclick: (e) => {
      if (chosen.has(n)) chosen.delete(n); else chosen.add(n);
      e.currentTarget.setAttribute('aria-pressed', String(chosen.has(n)));
      paintSummary();
    } }, h('span', { class: 'tooth-mark' }, toothLabel(n)), currentNotation === 'palmer' ? h('small', {}, String(n)) : null);
  // One arch: the patient's right half (seen on the left), the midline, the left half.
  const arch = (row, upper) => {
    const half = row.length / 2;
    return h('div', { class: `arch ${upper ? 'upper' : 'lower'}`, role: 'group',
      'aria-label': t(upper ? 'teeth.upper' : 'teeth.lower') },
    h('div', { class: 'quadrant right', role: 'group', 'aria-label': t(upper ? 'teeth.upperRight' : 'teeth.lowerRight') },
      row.slice(0, half).map(toothButton)),
    h('div', { class: 'quadrant left', role: 'group', 'aria-label': t(upper ? 'teeth.upperLeft' : 'teeth.lowerLeft') },
      row.slice(half).map(toothButton)));
  };
  const paintChart = () => {
    const rows = set === 'permanent' ? PERMANENT : DECIDUOUS;
    chart.dataset.set = set;
    replace(chart,
      h('div', { class: 'chart-sides', 'aria-hidden': 'true' }, h('span', {}, t('teeth.patientRight')),
        h('span', {}, t('teeth.patientLeft'))),
      arch(rows[0], true), arch(rows[1], false));
    replace(tabs, [['permanent', t('teeth.permanent')], ['deciduous', t('teeth.deciduous')]].map(([value, label]) =>
      h('button', { type: 'button', class: 'seg-btn', 'aria-pressed': String(set === value), dataset: { set: value },
        onclick: () => { set = value; paintChart(); } }, label)));
  };
  const dialog = h('form', { class: 'sheet tooth-sheet', role: 'dialog', 'aria-modal': 'true',
    'aria-labelledby': 'tooth-title', id: 'tooth-sheet' },
  h('h2', { id: 'tooth-title' }, t('teeth.edit')),
  h('p', { class: 'hint' }, t(currentNotation === 'palmer' ? 'teeth.hintPalmer' : 'teeth.hintFdi')),
  tabs, chart, summary,
  h('div', { class: 'sheet-actions' },
    h('button', { class: 'btn', type: 'button', id: 'tooth-clear', onclick: () => {
      chosen.clear(); paintChart(); paintSummary();
    } }, t('teeth.clear')),
    h('span', { class: 'spacer' }),
    h('button', { class: 'btn', type: 'button', onclick: () => close() }, t('common.cancel')),
    h('button', { class: 'btn primary', type: 'submit', id: 'tooth-save' }, t('common.save'))));
  const backdrop = h('div', { class: 'backdrop' }, dialog);
  const release = trapFocus(dialog);
  const close = () => { backdrop.remove(); release(); };
  dialog.addEventListener('keydown', (e) => { e.stopPropagation(); if (e.key === 'Escape') close(); });
  dialog.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const saved = await api(`/api/v1/media/${item.id}/teeth`, { method: 'PUT',
        json: { teeth: [...chosen].sort((a, b) => a - b) } });
      item.teeth = saved.teeth;
      onSaved(item.id, saved.teeth);
      savedListener(item.id, saved.teeth);
      close();
      toast(t('teeth.saved'));
    } catch (err) {
      toast(messageFor(err), { kind: 'error', ms: 8000 });
    }
  });
  paintChart();
  paintSummary();
  host.append(backdrop);
  dialog.querySelector('.tooth')?.focus();
}
