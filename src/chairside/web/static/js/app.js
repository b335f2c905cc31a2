// The viewer's entry point: signs in (one device at a time), then shows patient search, a patient's
// timeline, the player/photo viewer, compare, and imports. Routes: / and /p/{patient_id}[?m=…|?compare=…].

import { api, events, setCsrf } from './api.js';
import { openAdmin } from './admin.js';
import { h, replace } from './dom.js';
import { applyLang, onLangChange, t, warmFormats } from './i18n.js';
import { icon } from './icons.js';
import { Compare } from './compare.js';
import { renderMergeBanner } from './merge-flags.js';
import { openPatientForm } from './patient-form.js';
import { SearchPane } from './search.js';
import { messageFor, renderSignIn, renderTakenOver, startHeartbeat, stopHeartbeat } from './session.js';
import { FIRST_PAGE, PatientView } from './timeline.js';
import { Uploader } from './upload.js';
import { Viewer } from './viewer.js';
import { langSwitch, renderQuotaBanner, toast } from './widgets.js';

const root = document.getElementById('app');
const UUID = /^\/p\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/?$/i;
const state = {
  me: null, clinics: [], search: null, view: null, viewer: null, compare: null, uploader: null,
  shell: null, main: null, banner: null, signedOut: false, quotaTimer: 0,
};

function clinicName(id) { return state.clinics.find((c) => c.id === id)?.name || ''; }

/**
 * On a deep link, ask for the patient, the first page of their media and their tags at once, while
 * the session is being checked: the timeline then paints after one round trip instead of four.
 */
function prefetch(patientId, { quiet401 = false } = {}) {
  const quiet = (path) => api(path, { quiet401 });
  const bundle = {
    id: patientId,
    patient: quiet(`/api/v1/patients/${patientId}`),
    firstPage: quiet(`/api/v1/patients/${patientId}/media?limit=${FIRST_PAGE}`),
    tags: quiet(`/api/v1/patients/${patientId}/tags`),
  };
  for (const promise of [bundle.patient, bundle.firstPage, bundle.tags]) promise.catch(() => {});
  return bundle;
}

function parseRoute() {
  const match = window.location.pathname.match(UUID);
  const query = new URLSearchParams(window.location.search);
  return { patientId: match ? match[1].toLowerCase() : null, media: query.get('m'), compare: query.get('compare') };
}

function navigate(path, { replaceState = false, overlay = false } = {}) {
  if (replaceState) window.history.replaceState({ overlay }, '', path);
  else window.history.pushState({ overlay }, '', path);
  route();
}

function closeOverlays() {
  if (document.getElementById('admin-backdrop')) { // the admin panel (admin.js) and its sheets
    document.querySelectorAll('#admin-backdrop, .admin-sheet-backdrop').forEach((el) => el.remove());
    document.body.classList.remove('has-overlay');
  }
  if (state.viewer) { const v = state.viewer; state.viewer = null; v.onClose = () => {}; v.close(); }
  if (state.compare) { const c = state.compare; state.compare = null; c.onClose = () => {}; c.close(); }
}

/** Leave an overlay: back in history when we opened it, else rewrite the address. */
function leaveOverlay() {
  if (window.history.state?.overlay) window.history.back();
  else navigate(`/p/${state.view.patient.id}`, { replaceState: true });
}

function bottomNav() {
  const item = (name, label, onclick, id) => h('button', { class: 'nav-item', type: 'button', id, onclick },
    icon(name, { size: 22 }), h('span', {}, label));
  return h('nav', { class: 'bottomnav', 'aria-label': t('nav.label') },
    item('search', t('nav.search'), () => { navigate('/'); state.search.focus(); }, 'nav-search'),
    item('grid', t('nav.patient'), () => {
      const id = state.view?.patient.id || state.lastPatient;
      if (id) navigate(`/p/${id}`); else toast(t('nav.choosePatient'));
    }, 'nav-patient'),
    item('upload', t('nav.import'), () => {
      if (state.view) state.uploader.show(); else toast(t('nav.choosePatient'));
    }, 'nav-import'),
    item('select', t('nav.select'), () => {
      if (state.view) state.view.setSelecting(!state.view.selecting); else toast(t('nav.choosePatient'));
    }, 'nav-select'),
    item('user', t('nav.account'), () => accountSheet(), 'nav-account'));
}

function accountSheet() {
  const close = () => backdrop.remove();
  const sheet = h('div', { class: 'sheet', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'account-title' },
    h('h2', { id: 'account-title' }, t('account.title')),
    h('p', {}, t('account.signedInAs', { name: state.me.name, device: state.me.device })),
    langSwitch({ id: 'sheet-lang-switch', onSwitched: () => close() }), // the page is redrawn in the other language
    state.me.role === 'admin' ? h('button', { class: 'btn wide', type: 'button', id: 'sheet-admin-open', onclick: () => {
      close(); openAdmin({ me: state.me, clinics: state.clinics });
    } }, icon('layers', { size: 20 }), h('span', {}, t('admin.open'))) : null,
    h('button', { class: 'btn wide', type: 'button', onclick: () => signOut() }, icon('logout', { size: 20 }),
      h('span', {}, t('account.signOut'))),
    h('button', { class: 'btn wide', type: 'button', onclick: close }, t('common.close')));
  const backdrop = h('div', { class: 'backdrop', onclick: (e) => { if (e.target === backdrop) close(); } }, sheet);
  sheet.addEventListener('keydown', (e) => { if (e.key === 'Escape') close(); });
  document.body.append(backdrop);
  sheet.querySelector('button').focus();
}

function renderShell() {
  state.search = new SearchPane({ accountId: state.me.account_id, clinicName,
    onOpen: (p) => navigate(`/p/${p.id}`),
    onNew: () => openPatientForm(document.body, { clinics: state.clinics, onSaved: (p) => navigate(`/p/${p.id}`) }) });
  state.banner = h('div', { class: 'banner', id: 'quota-banner', hidden: true });
  state.mergeBanner = h('div', { class: 'banner', id: 'merge-banner', hidden: true }); // merge-flags.js
  state.main = h('main', { class: 'pane-patient', id: 'main', tabindex: '-1' });
  state.shell = h('div', { class: 'app route-home', id: 'shell' },
    h('a', { class: 'skip-link', href: '#main' }, t('nav.skip')),
    h('header', { class: 'topbar' },
      h('button', { class: 'btn icon-btn back-btn', type: 'button', 'aria-label': t('nav.backToSearch'),
        onclick: () => navigate('/') }, icon('back')),
      h('a', { class: 'brand', href: '/', onclick: (e) => { e.preventDefault(); navigate('/'); } },
        h('img', { src: '/static/icon.svg', alt: '', width: 28, height: 28 }), h('span', {}, 'Chairside')),
      h('span', { class: 'topbar-title', id: 'topbar-title' }),
      h('span', { class: 'spacer' }),
      langSwitch(),
      state.me.role === 'admin' ? h('button', { class: 'btn ghost admin-open', type: 'button', id: 'admin-open',
        onclick: () => openAdmin({ me: state.me, clinics: state.clinics }) }, icon('layers', { size: 20 }),
      h('span', {}, t('admin.open'))) : null,
      h('span', { class: 'who', title: state.me.device }, icon('user', { size: 20 }), h('span', {}, state.me.name)),
      h('button', { class: 'btn ghost signout', type: 'button', id: 'sign-out', onclick: () => signOut() },
        icon('logout', { size: 20 }), h('span', {}, t('account.signOut')))),
    state.banner,
    state.mergeBanner,
    h('div', { class: 'panes' },
      h('aside', { class: 'pane-search', 'aria-label': t('search.label') }, state.search.el),
      state.main,
      state.uploader.el), // docked as a third column on wide screens (app.css)
    bottomNav());
  replace(root, state.shell);
}

async function openPatient(patientId) {
  state.view = null;
  const early = state.prefetched?.id === patientId ? state.prefetched : prefetch(patientId);
  state.prefetched = null;
  replace(state.main, h('p', { class: 'loading', role: 'status' }, t('common.loading')));
  let patient;
  try {
    patient = await early.patient;
  } catch (e) {
    replace(state.main, h('div', { class: 'empty-state' }, h('p', {}, messageFor(e)),
      h('button', { class: 'btn', type: 'button', onclick: () => navigate('/') }, t('nav.backToSearch'))));
    return null;
  }
  if (parseRoute().patientId !== patientId) return null;
  const view = new PatientView({
    patient, clinics: state.clinics, uploader: state.uploader,
    onOpen: (items, index) => navigate(`/p/${patientId}?m=${items[index].id}`, { overlay: true }),
    onCompare: (items) => navigate(`/p/${patientId}?compare=${items.map((m) => m.id).join(',')}`, { overlay: true }),
    onPatientChanged: (p) => {
      document.getElementById('topbar-title').textContent = p.name;
      state.uploader.setPatient(p);
      state.search.refresh();
    },
  });
  state.view = view;
  state.lastPatient = patientId;
  state.uploader.setPatient(patient);
  state.search.remember(patient);
  state.search.markActive(patientId);
  document.getElementById('topbar-title').textContent = patient.name;
  replace(state.main, view.el);
  const loading = view.load(early).catch((e) => toast(messageFor(e), { kind: 'error' }));
  await Promise.race([view.painted, loading]); // the rest of a long timeline keeps coming in
  return view;
}

async function mediaFor(ids) {
  const known = new Map((state.view?.items || []).map((m) => [m.id, m]));
  return Promise.all(ids.map((id) => known.get(id) || api(`/api/v1/media/${id}`)));
}

async function route() {
  if (!state.me) return;
  const r = parseRoute();
  state.shell.classList.toggle('route-patient', Boolean(r.patientId));
  state.shell.classList.toggle('route-home', !r.patientId);
  if (!r.patientId) {
    closeOverlays();
    state.view = null;
    state.uploader.setPatient(null);
    replace(state.main, h('div', { class: 'placeholder' }, h('p', {}, t('patient.placeholder'))));
    document.getElementById('topbar-title').textContent = '';
    state.search.markActive(null);
    return;
  }
  if (state.view?.patient.id !== r.patientId) {
    closeOverlays();
    await openPatient(r.patientId);
  }
  const view = state.view;
  if (!view) return;
  if (!r.media && state.viewer) closeOverlays();
  if (!r.compare && state.compare) closeOverlays();
  try {
    if (r.media && !state.viewer) {
      let items = view.visible();
      let index = items.findIndex((m) => m.id === r.media);
      if (index < 0) { items = await mediaFor([r.media]); index = 0; }
      openViewer(items, index);
    } else if (r.compare && !state.compare) {
      const items = await mediaFor(r.compare.split(',').slice(0, 4));
      // A deep link may come before the tags: wait for them a little (the cells are labelled by tag).
      await Promise.race([view.tagsReady, new Promise((resolve) => { setTimeout(resolve, 3000); })]);
      if (state.compare || parseRoute().compare !== r.compare) return;
      state.compare = new Compare({ items, tagsOf: (id) => state.view?.tags.get(id) || [],
        onClose: () => { state.compare = null; leaveOverlay(); } });
    }
  } catch (e) {
    toast(messageFor(e), { kind: 'error' });
  }
}

function openViewer(items, index) {
  const view = state.view;
  state.viewer = new Viewer({
    items, index,
    onClose: () => { state.viewer = null; leaveOverlay(); },
    onIndex: (item) => {
      if (parseRoute().media !== item.id) window.history.replaceState(window.history.state, '', `/p/${view.patient.id}?m=${item.id}`);
    },
    onSaveFrame: (file, capturedAt) => state.uploader.add([file], view.patient, { capturedAt }),
    onTags: (id, tags) => view.setTags(id, tags),
    tagsOf: (id) => view.tags.get(id) || [],
  });
}

async function loadClinics() {
  try { state.clinics = (await api('/api/v1/clinics', { quiet401: true })).items; } catch { state.clinics = []; }
}

async function signedIn(known = null, clinics = loadClinics()) {
  const me = known || await api('/api/v1/me');
  state.me = me;
  state.signedOut = false;
  setCsrf(me.csrf_token);
  startHeartbeat();
  await clinics;
  state.uploader = new Uploader({ accountId: me.account_id, onDone: (mediaId, patientId) => {
    if (state.view?.patient.id === patientId) state.view.addItem(mediaId).catch(() => {});
  } });
  renderShell();
  await route();
  // The patient list is asked for before the plan banner (it is what comes next after signing in); on a
  // patient's page the timeline's thumbnails go first.
  if (parseRoute().patientId) setTimeout(() => state.search.refresh(), 250); else state.search.refresh();
  renderQuotaBanner(state.banner);
  renderMergeBanner(state.mergeBanner, { clinicName, onResolved: () => state.search.refresh() });
  clearInterval(state.quotaTimer);
  state.quotaTimer = setInterval(() => renderQuotaBanner(state.banner), 15 * 60 * 1000);
}

function showSignIn(message = '') {
  state.prefetched = null; // a patient fetched before signing in was refused (401): fetch it again afterwards
  state.me = null;
  renderSignIn(root, { message, onSignedIn: () => signedIn().catch((e) => showSignIn(messageFor(e))) });
}

function onUnauthorized(error) {
  if (state.signedOut) return;
  state.signedOut = true;
  stopHeartbeat();
  clearInterval(state.quotaTimer);
  closeOverlays();
  state.me = null;
  state.view = null;
  setCsrf('');
  if (error.code === 'signed-in-elsewhere') {
    renderTakenOver(root, { device: error.problem.device_name, onSignInAgain: () => showSignIn() });
  } else {
    showSignIn(messageFor(error));
  }
}

async function signOut() {
  try { await api('/api/v1/sessions/current', { method: 'DELETE' }); } catch { /* signed out anyway */ }
  state.signedOut = true;
  stopHeartbeat();
  clearInterval(state.quotaTimer);
  closeOverlays();
  document.querySelector('.backdrop')?.remove();
  window.history.replaceState({}, '', '/');
  showSignIn(t('signin.signedOut'));
}

async function boot() {
  applyLang();
  events.addEventListener('unauthorized', (e) => onUnauthorized(e.detail));
  window.addEventListener('popstate', () => route());
  onLangChange(() => {
    if (!state.me) { showSignIn(); return; }
    closeOverlays();
    const pending = state.view;
    renderShell();
    state.view = null;
    if (pending) state.uploader.setPatient(pending.patient);
    route().then(() => state.search.refresh());
    renderQuotaBanner(state.banner);
    renderMergeBanner(state.mergeBanner, { clinicName, onResolved: () => state.search.refresh() });
  });
  const r = parseRoute();
  if (r.patientId) state.prefetched = prefetch(r.patientId, { quiet401: true });
  try {
    const clinics = loadClinics();
    const me = api('/api/v1/me', { quiet401: true });
    warmFormats();
    await signedIn(await me, clinics);
  } catch (e) {
    if (e.status === 401 && e.code === 'signed-in-elsewhere') {
      state.signedOut = true;
      renderTakenOver(root, { device: e.problem.device_name, onSignInAgain: () => showSignIn() });
    } else {
      showSignIn(e.status === 401 ? '' : messageFor(e));
    }
  }
}

boot();
