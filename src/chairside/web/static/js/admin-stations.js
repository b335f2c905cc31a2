// The admin's stations screen: the contract's capture stations with their clinic, the clinics they see and their
// last contact; a one-time enrolment code for a new station; the clinics a station sees; revoking a lost one.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { fmtDateTime, t } from './i18n.js';
import { icon } from './icons.js';
import { messageFor } from './session.js';
import { toast } from './widgets.js';
import { confirmSheet, scopeSheet, scopeText, sheet } from './admin-common.js';

export class StationsPane {
  constructor({ clinics }) {
    this.clinics = clinics;
    this.status = h('p', { class: 'hint', id: 'admin-stations-status', role: 'status' }, t('common.loading'));
    this.list = h('ul', { class: 'admin-list', id: 'admin-stations' });
    this.el = h('section', { class: 'admin-pane', 'aria-labelledby': 'admin-tab-stations' },
      h('div', { class: 'admin-toolbar' },
        h('p', { class: 'hint' }, t('admin.stations.hint')),
        h('button', { class: 'btn primary', type: 'button', id: 'admin-enroll', onclick: () => this.enrollCode() },
          icon('camera', { size: 20 }), h('span', {}, t('admin.stations.enroll')))),
      this.status, this.list);
  }

  clinicName(id) { return this.clinics.find((c) => c.id === id)?.name || ''; }

  async load() {
    try {
      const { items } = await api('/api/v1/stations');
      this.status.textContent = t('admin.stations.count', { n: items.length });
      replace(this.list, items.map((s) => this.row(s)));
      this.list.dataset.loaded = '1';
    } catch (err) {
      this.status.textContent = err.status === 404 ? t('admin.cloudOnly') : messageFor(err);
    }
  }

  row(st) {
    const act = (id, label, onclick, attrs = {}) => h('button', { class: 'btn small', type: 'button',
      'aria-label': `${label}: ${st.name}`, dataset: { action: id }, onclick, ...attrs }, label);
    return h('li', { class: `admin-row${st.revoked_at ? ' disabled' : ''}`, dataset: { name: st.name, id: st.id } },
      h('div', { class: 'admin-row-head' },
        h('h3', {}, st.name),
        h('span', { class: 'admin-badge muted' }, this.clinicName(st.clinic_id)),
        st.revoked_at ? h('span', { class: 'admin-badge danger' }, t('admin.stations.revoked')) : null),
      h('p', { class: 'admin-scope-text' }, t('admin.scope.sees', { clinics: scopeText(st.clinic_scope, this.clinics) })),
      h('p', { class: 'admin-contact' }, icon('clock', { size: 18 }), ' ', st.last_contact_at
        ? t('admin.stations.lastContact', { when: fmtDateTime(st.last_contact_at) }) : t('admin.stations.noContact')),
      st.revoked_at
        ? h('p', { class: 'hint' }, t('admin.stations.revokedAt', { when: fmtDateTime(st.revoked_at) }))
        : h('div', { class: 'admin-actions' },
          act('scope', t('admin.scope.set'), () => this.setScope(st)),
          act('revoke', t('admin.stations.revoke'), () => this.revoke(st), { class: 'btn small danger-text' })));
  }

  enrollCode() {
    const clinic = h('select', { id: 'admin-enroll-clinic' },
      this.clinics.map((c) => h('option', { value: c.id }, c.name)));
    const result = h('div', { class: 'admin-code', id: 'admin-enroll-result', 'aria-live': 'polite' });
    const error = h('p', { class: 'form-error', id: 'admin-enroll-error', role: 'alert' });
    const go = h('button', { class: 'btn primary', type: 'submit', id: 'admin-enroll-issue' }, t('admin.stations.issue'));
    const form = h('form', { class: 'admin-form' },
      h('p', {}, t('admin.stations.enrollExplain')),
      h('div', { class: 'admin-field', hidden: this.clinics.length < 2 },
        h('label', { for: 'admin-enroll-clinic' }, t('admin.stations.clinic')), clinic),
      result, error,
      h('div', { class: 'sheet-actions' },
        h('button', { class: 'btn', type: 'button', id: 'admin-enroll-close', onclick: () => close() }, t('common.close')),
        go));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      go.disabled = true;
      error.textContent = '';
      try {
        const r = await api(`/api/v1/clinics/${clinic.value}/enroll-codes`, { method: 'POST' });
        replace(result,
          h('p', { class: 'admin-code-label' }, t('admin.stations.codeFor', { clinic: this.clinicName(r.clinic_id) })),
          h('output', { class: 'admin-code-value', id: 'admin-enroll-code' }, r.code),
          h('p', { class: 'hint' }, t('admin.stations.codeExpires', { when: fmtDateTime(r.expires_at) })));
        go.textContent = t('admin.stations.issueAnother');
      } catch (err) {
        error.textContent = messageFor(err);
      }
      go.disabled = false;
    });
    const { close } = sheet('admin-enroll-sheet', t('admin.stations.enroll'), form);
  }

  setScope(st) {
    scopeSheet('admin-st-scope', st.name, st.clinic_scope, this.clinics, `/api/v1/stations/${st.id}/scope`,
      { messageFor, done: () => this.load() });
  }

  revoke(st) {
    confirmSheet('admin-revoke', t('admin.stations.revokeTitle'), t('admin.stations.revokeQuestion', { name: st.name }),
      t('admin.stations.revoke'), async () => {
        await api(`/api/v1/stations/${st.id}/revoke`, { method: 'POST' });
        toast(t('admin.stations.revokedDone', { name: st.name }));
        await this.load();
      }, { messageFor });
  }
}
