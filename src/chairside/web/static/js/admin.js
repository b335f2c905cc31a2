// The contract admin's screens, opened from the viewer's menu (only for an admin): viewer accounts
// (admin-accounts.js) and capture stations (admin-stations.js), as two tabs of one full-screen panel.
// Cloud only: a relay does not serve these routes, and the panel says so.

import { h, replace, trapFocus } from './dom.js';
import { t } from './i18n.js';
import { icon } from './icons.js';
import { AccountsPane } from './admin-accounts.js';
import { StationsPane } from './admin-stations.js';

function ensureStyles() {
  if (document.querySelector('link[data-admin-css]')) return;
  document.head.append(h('link', { rel: 'stylesheet', href: '/static/css/admin.css', dataset: { adminCss: '1' } }));
}

/** Open the admin panel over the page; `clinics` are the contract's clinics (GET /api/v1/clinics). */
export function openAdmin({ me, clinics, tab = 'accounts' }) {
  ensureStyles();
  document.getElementById('admin-backdrop')?.remove();
  const body = h('div', { class: 'admin-body', id: 'admin-body' });
  const names = ['accounts', 'stations'];
  const tabs = names.map((name) => h('button', { class: 'admin-tab', type: 'button', role: 'tab', id: `admin-tab-${name}`,
    'aria-selected': 'false', onclick: () => show(name) }, t(`admin.tab.${name}`)));
  const panel = h('div', { class: 'admin', id: 'admin', role: 'dialog', 'aria-modal': 'true',
    'aria-labelledby': 'admin-title' },
  h('header', { class: 'admin-head' },
    h('h2', { id: 'admin-title' }, t('admin.title')),
    h('div', { class: 'admin-tabs', role: 'tablist', 'aria-label': t('admin.title') }, tabs),
    h('button', { class: 'btn icon-btn', type: 'button', id: 'admin-close', 'aria-label': t('common.close'),
      title: t('common.close'), onclick: () => close() }, icon('close'))),
  body);
  const backdrop = h('div', { class: 'backdrop admin-backdrop', id: 'admin-backdrop' }, panel);
  const release = trapFocus(panel);
  function close() { backdrop.remove(); release(); document.body.classList.remove('has-overlay'); }
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !document.querySelector('.admin-sheet')) close();
  });
  function show(name) {
    tabs.forEach((tabEl, i) => tabEl.setAttribute('aria-selected', String(names[i] === name)));
    const pane = name === 'accounts' ? new AccountsPane({ me, clinics }) : new StationsPane({ clinics });
    replace(body, pane.el);
    pane.load();
  }
  document.body.append(backdrop);
  document.body.classList.add('has-overlay');
  show(tab);
  tabs[names.indexOf(tab)].focus();
  return { close };
}
