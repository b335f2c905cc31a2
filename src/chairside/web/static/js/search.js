// Finding a patient: by chart number, or name in kanji or kana (any width, hiragana or katakana),
// and the patients opened recently on this device.

import { api } from './api.js';
import { debounce, h, replace } from './dom.js';
import { fmtBirth, t } from './i18n.js';
import { icon } from './icons.js';

const RECENT_MAX = 12;

export function sexLabel(sex) { return sex === 'male' || sex === 'female' || sex === 'other' ? t(`sex.${sex}`) : ''; }

export class SearchPane {
  constructor({ accountId, clinicName, onOpen, onNew = null }) {
    this.recentKey = `chairside.recent.${accountId}`;
    this.clinicName = clinicName;
    this.onOpen = onOpen;
    this.controller = null;
    this.input = h('input', { id: 'patient-search', type: 'search', autocomplete: 'off', enterkeyhint: 'search',
      spellcheck: 'false', placeholder: t('search.placeholder'), 'aria-controls': 'patient-results' });
    this.heading = h('h2', { class: 'list-title', id: 'results-title' });
    this.list = h('ul', { class: 'patient-list', id: 'patient-results', 'aria-labelledby': 'results-title' });
    this.status = h('p', { class: 'hint', role: 'status' });
    const form = h('form', { class: 'search-form', role: 'search' },
      h('label', { for: 'patient-search' }, t('search.label')),
      h('div', { class: 'search-box' }, icon('search', { size: 20 }), this.input));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.list.querySelector('a')?.click();
    });
    this.input.addEventListener('input', debounce(() => this.refresh(), 180));
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowDown') { e.preventDefault(); this.list.querySelector('a')?.focus(); }
    });
    this.list.addEventListener('keydown', (e) => {
      const links = [...this.list.querySelectorAll('a')];
      const i = links.indexOf(document.activeElement);
      if (e.key === 'ArrowDown' && i >= 0) { e.preventDefault(); links[Math.min(links.length - 1, i + 1)].focus(); }
      if (e.key === 'ArrowUp' && i >= 0) { e.preventDefault(); (i === 0 ? this.input : links[i - 1]).focus(); }
    });
    // Register a patient (patient-form.js, opened by the app)
    const add = onNew ? h('button', { class: 'btn wide new-patient', type: 'button', id: 'patient-new', onclick: () => onNew() },
      icon('user', { size: 20 }), h('span', {}, t('patientForm.new'))) : null;
    this.el = h('div', { class: 'search-pane' }, form, add, this.heading, this.status, this.list);
  }

  focus() { this.input.focus(); }

  remember(patient) {
    const ids = [patient.id, ...this.recentIds().filter((id) => id !== patient.id)].slice(0, RECENT_MAX);
    localStorage.setItem(this.recentKey, JSON.stringify(ids));
  }

  recentIds() {
    try { return JSON.parse(localStorage.getItem(this.recentKey) || '[]'); } catch { return []; }
  }

  async refresh() {
    this.controller?.abort();
    this.controller = new AbortController();
    const { signal } = this.controller;
    const q = this.input.value.trim();
    try {
      if (q) {
        const found = await api(`/api/v1/patients?q=${encodeURIComponent(q)}&limit=50`, { signal });
        this.show(t('search.results', { n: found.items.length }), found.items, t('search.none'));
      } else {
        const [updated, ...opened] = await Promise.all([
          api('/api/v1/patients?limit=20', { signal }),
          ...this.recentIds().map((id) => api(`/api/v1/patients/${id}`, { signal }).catch(() => null)),
        ]);
        const seen = new Set();
        const items = [...opened.filter(Boolean), ...updated.items].filter((p) => !seen.has(p.id) && seen.add(p.id));
        this.show(t('search.recent'), items.slice(0, 20), t('search.noPatients'));
      }
    } catch (e) {
      if (e.name !== 'AbortError') this.status.textContent = t('error.network');
    }
  }

  show(title, patients, empty) {
    this.heading.textContent = title;
    this.status.textContent = patients.length ? '' : empty;
    this.list.dataset.count = String(patients.length);
    replace(this.list, patients.map((p) => h('li', {},
      h('a', { class: 'patient-card', href: `/p/${p.id}`, dataset: { id: p.id }, onclick: (e) => {
        if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        this.onOpen(p);
      } },
      h('span', { class: 'chart' }, p.chart_no),
      h('span', { class: 'who' }, h('span', { class: 'name' }, p.name), h('span', { class: 'kana' }, p.name_kana)),
      h('span', { class: 'meta' }, [this.clinicName(p.clinic_id), fmtBirth(p.birth_date), sexLabel(p.sex)]
        .filter(Boolean).join(' · '))))));
  }

  markActive(patientId) {
    for (const a of this.list.querySelectorAll('a')) {
      if (a.dataset.id === patientId) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }
}
