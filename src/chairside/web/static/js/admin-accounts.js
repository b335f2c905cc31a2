// The admin's accounts screen: list the contract's viewer accounts with the device each is signed in on, add one,
// set a new password, choose the clinics it sees, sign its device out, disable it or enable it again.
// The server decides and audits everything (auth/admin.py); this only asks and shows.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { fmtDateTime, t } from './i18n.js';
import { icon } from './icons.js';
import { messageFor } from './session.js';
import { toast } from './widgets.js';
import { confirmSheet, scopePicker, scopeSheet, scopeText, sheet } from './admin-common.js';

/** A password to hand over: 12 characters without the ones that are easy to misread (0/O, 1/l/I). */
function suggestPassword() {
  const letters = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return [...bytes].map((b) => letters[b % letters.length]).join('');
}

function passwordField(id) {
  const input = h('input', { type: 'text', id, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off',
    required: true, class: 'admin-password' }); // the server judges the length (weak-password)
  const suggest = h('button', { class: 'btn small', type: 'button', id: `${id}-suggest`,
    onclick: () => { input.value = suggestPassword(); input.focus(); } }, t('admin.password.suggest'));
  return { input, el: h('div', { class: 'admin-field' },
    h('label', { for: id }, t('admin.password.label')), h('div', { class: 'admin-inline' }, input, suggest),
    h('p', { class: 'hint' }, t('admin.password.hint'))) };
}

export class AccountsPane {
  constructor({ me, clinics }) {
    this.me = me;
    this.clinics = clinics;
    this.status = h('p', { class: 'hint', id: 'admin-accounts-status', role: 'status' }, t('common.loading'));
    this.list = h('ul', { class: 'admin-list', id: 'admin-accounts' });
    this.el = h('section', { class: 'admin-pane', 'aria-labelledby': 'admin-tab-accounts' },
      h('div', { class: 'admin-toolbar' },
        h('p', { class: 'hint' }, t('admin.accounts.hint')),
        h('button', { class: 'btn primary', type: 'button', id: 'admin-add-account', onclick: () => this.add() },
          icon('user', { size: 20 }), h('span', {}, t('admin.accounts.add')))),
      this.status, this.list);
  }

  async load() {
    try {
      const { items } = await api('/api/v1/accounts');
      this.status.textContent = t('admin.accounts.count', { n: items.length });
      replace(this.list, items.map((a) => this.row(a)));
      this.list.dataset.loaded = '1';
    } catch (err) {
      this.status.textContent = err.status === 404 ? t('admin.cloudOnly') : messageFor(err);
    }
  }

  row(a) {
    const self = a.id === this.me.account_id;
    const s = a.session;
    const act = (id, label, onclick, attrs = {}) => h('button', { class: 'btn small', type: 'button',
      id: `${id}-${a.login}`, 'aria-label': `${label}: ${a.login}`, onclick, ...attrs }, label);
    return h('li', { class: `admin-row${a.disabled_at ? ' disabled' : ''}`, dataset: { login: a.login, id: a.id } },
      h('div', { class: 'admin-row-head' },
        h('h3', {}, a.login),
        a.is_admin ? h('span', { class: 'admin-badge' }, t('admin.accounts.admin')) : null,
        self ? h('span', { class: 'admin-badge muted' }, t('admin.accounts.you')) : null,
        a.disabled_at ? h('span', { class: 'admin-badge danger' }, t('admin.accounts.disabled')) : null),
      h('p', { class: 'admin-scope-text' }, t('admin.scope.sees', { clinics: scopeText(a.clinic_scope, this.clinics) })),
      h('p', { class: 'admin-session' }, s
        ? [icon('user', { size: 18 }), ' ', t('admin.session.on', { device: s.device_name, since: fmtDateTime(s.since),
          last: fmtDateTime(s.last_seen_at) }), s.user_agent ? h('small', { class: 'admin-ua' }, s.user_agent) : null]
        : t(a.disabled_at ? 'admin.session.disabledSince' : 'admin.session.none', { when: fmtDateTime(a.disabled_at) })),
      h('div', { class: 'admin-actions' },
        s && !self ? act('admin-end', t('admin.session.end'), () => this.endSession(a)) : null,
        act('admin-reset', t('admin.password.reset'), () => this.resetPassword(a)),
        act('admin-scope', t('admin.scope.set'), () => this.setScope(a)),
        self ? null : a.disabled_at
          ? act('admin-enable', t('admin.accounts.enable'), () => this.enable(a))
          : act('admin-disable', t('admin.accounts.disable'), () => this.disable(a), { class: 'btn small danger-text' })));
  }

  add() {
    const login = h('input', { type: 'text', id: 'admin-new-login', autocomplete: 'off', autocapitalize: 'off',
      spellcheck: 'false', maxlength: '100', required: true });
    const password = passwordField('admin-new-password');
    const isAdmin = h('input', { type: 'checkbox', id: 'admin-new-admin' });
    const scope = scopePicker(null, this.clinics, 'admin-new-scope');
    const error = h('p', { class: 'form-error', id: 'admin-new-error', role: 'alert' });
    const save = h('button', { class: 'btn primary', type: 'submit', id: 'admin-new-save' }, t('admin.accounts.create'));
    const form = h('form', { class: 'admin-form' },
      h('div', { class: 'admin-field' }, h('label', { for: 'admin-new-login' }, t('admin.accounts.login')), login,
        h('p', { class: 'hint' }, t('admin.accounts.loginHint'))),
      password.el,
      h('label', { class: 'admin-check' }, isAdmin, h('span', {}, t('admin.accounts.makeAdmin'))),
      scope.el, error,
      h('div', { class: 'sheet-actions' },
        h('button', { class: 'btn', type: 'button', onclick: () => close() }, t('common.cancel')), save));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!login.value.trim() || !password.input.value) { error.textContent = t('admin.accounts.required'); return; }
      save.disabled = true;
      try {
        await api('/api/v1/accounts', { method: 'POST', json: { login: login.value.trim(),
          password: password.input.value, admin: isAdmin.checked, clinic_ids: scope.value() } });
        close();
        toast(t('admin.accounts.created', { login: login.value.trim() }));
        await this.load();
      } catch (err) {
        error.textContent = messageFor(err);
        save.disabled = false;
      }
    });
    const { close } = sheet('admin-new', t('admin.accounts.addTitle'), form);
    login.focus();
  }

  resetPassword(a) {
    const password = passwordField('admin-reset-password');
    const error = h('p', { class: 'form-error', id: 'admin-reset-error', role: 'alert' });
    const save = h('button', { class: 'btn primary', type: 'submit', id: 'admin-reset-save' }, t('admin.password.save'));
    const form = h('form', { class: 'admin-form' },
      h('p', {}, t('admin.password.explain', { login: a.login })),
      password.el, error,
      h('div', { class: 'sheet-actions' },
        h('button', { class: 'btn', type: 'button', onclick: () => close() }, t('common.cancel')), save));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      save.disabled = true;
      try {
        await api(`/api/v1/accounts/${a.id}/password`, { method: 'POST', json: { password: password.input.value } });
        close();
        toast(t('admin.password.done', { login: a.login }));
        await this.load();
      } catch (err) {
        error.textContent = messageFor(err);
        save.disabled = false;
      }
    });
    const { close } = sheet('admin-reset', t('admin.password.title', { login: a.login }), form);
    password.input.focus();
  }

  setScope(a) {
    scopeSheet('admin-scope', a.login, a.clinic_scope, this.clinics, `/api/v1/accounts/${a.id}/scope`,
      { messageFor, done: () => this.load() });
  }

  endSession(a) {
    confirmSheet('admin-end', t('admin.session.endTitle'),
      t('admin.session.endQuestion', { login: a.login, device: a.session.device_name }), t('admin.session.end'),
      async () => {
        await api(`/api/v1/accounts/${a.id}/session`, { method: 'DELETE' });
        toast(t('admin.session.ended', { login: a.login }));
        await this.load();
      }, { messageFor });
  }

  disable(a) {
    confirmSheet('admin-disable', t('admin.accounts.disableTitle'),
      t('admin.accounts.disableQuestion', { login: a.login }), t('admin.accounts.disable'),
      async () => {
        await api(`/api/v1/accounts/${a.id}/disable`, { method: 'POST' });
        toast(t('admin.accounts.disabledDone', { login: a.login }));
        await this.load();
      }, { messageFor });
  }

  async enable(a) {
    try {
      await api(`/api/v1/accounts/${a.id}/enable`, { method: 'POST' });
      toast(t('admin.accounts.enabledDone', { login: a.login }));
      await this.load();
    } catch (err) {
      toast(messageFor(err), { kind: 'error' });
    }
  }
}
