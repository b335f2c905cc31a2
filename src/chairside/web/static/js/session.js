// Signing in on one device at a time: the sign-in form, "in use on another device" (with take over),
// "taken over by another device", and the heartbeat that keeps an open page's session alive.

import { api, ApiError, setCsrf } from './api.js';
import { h, replace } from './dom.js';
import { fmtDateTime, t } from './i18n.js';
import { langSwitch } from './widgets.js';

const DEVICE_KEY = 'chairside.device';
const HEARTBEAT_MS = 4 * 60 * 1000;
let heartbeatTimer = 0;

export function guessDevice() {
  const ua = navigator.userAgent;
  if (/iPad|Macintosh/.test(ua) && navigator.maxTouchPoints > 1) return 'iPad';
  if (/iPhone/.test(ua)) return 'iPhone';
  if (/Android/.test(ua)) return /Mobile/.test(ua) ? t('device.androidPhone') : t('device.androidTablet');
  if (/Windows/.test(ua)) return t('device.windows');
  if (/Macintosh/.test(ua)) return 'Mac';
  return t('device.browser');
}

function screen(...children) {
  return h('main', { class: 'auth-screen', id: 'main' },
    h('div', { class: 'auth-card' },
      h('div', { class: 'auth-brand' }, h('img', { src: '/static/icon.svg', alt: '', width: 40, height: 40 }),
        h('span', {}, 'Chairside')),
      ...children,
      h('div', { class: 'auth-lang' }, langSwitch())));
}

/** The sign-in form. Resolves (through onSignedIn) once this device holds the session. */
export function renderSignIn(root, { message = '', onSignedIn }) {
  const error = h('p', { class: 'form-error', role: 'alert', id: 'signin-error' }, message);
  const login = h('input', { id: 'login', name: 'login', autocomplete: 'username', required: true,
    autocapitalize: 'off', spellcheck: 'false' });
  const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password',
    required: true });
  const device = h('input', { id: 'device', name: 'device', required: true, maxlength: 100,
    value: localStorage.getItem(DEVICE_KEY) || guessDevice() });
  const submit = h('button', { class: 'btn primary wide', type: 'submit' }, t('signin.submit'));
  const form = h('form', { class: 'auth-form', 'aria-describedby': 'signin-error' },
    h('h1', {}, t('signin.title')),
    h('label', { for: 'login' }, t('signin.login')), login,
    h('label', { for: 'password' }, t('signin.password')), password,
    h('label', { for: 'device' }, t('signin.device')), device,
    h('p', { class: 'hint' }, t('signin.deviceHint')),
    error, submit);
  const attempt = async (takeover) => {
    submit.disabled = true;
    error.textContent = '';
    try {
      localStorage.setItem(DEVICE_KEY, device.value.trim());
      const session = await api('/api/v1/sessions', { method: 'POST', quiet401: true, json: {
        login: login.value.trim(), password: password.value, device_name: device.value.trim(), takeover } });
      setCsrf(session.csrf_token);
      onSignedIn(session);
    } catch (e) {
      submit.disabled = false;
      if (e instanceof ApiError && e.status === 409 && e.code === 'account-in-use') {
        renderInUse(root, {
          device: e.problem.device_name, since: e.problem.since, lastSeen: e.problem.last_seen_at,
          onTakeover: () => attempt(true), onCancel: () => renderSignIn(root, { onSignedIn }),
        });
        return;
      }
      error.textContent = messageFor(e);
    }
  };
  form.addEventListener('submit', (event) => { event.preventDefault(); attempt(false); });
  replace(root, screen(form));
  login.focus();
}

export function messageFor(error) {
  if (!(error instanceof ApiError)) return t('error.unexpected');
  const key = `problem.${error.code}`;
  const known = t(key);
  if (known !== key) return known.replace('{wait}', error.problem.retry_after_s ?? '');
  if (error.status === 0) return t('error.network');
  return error.problem.detail || t('error.unexpected');
}

export function renderInUse(root, { device, since, lastSeen, onTakeover, onCancel }) {
  const take = h('button', { class: 'btn primary wide', type: 'button', id: 'takeover', onclick: () => {
    take.disabled = true;
    onTakeover();
  } }, t('inuse.takeover'));
  replace(root, screen(
    h('section', { class: 'auth-notice', role: 'alertdialog', 'aria-labelledby': 'inuse-title',
      'aria-describedby': 'inuse-text' },
    h('h1', { id: 'inuse-title' }, t('inuse.title')),
    h('p', { id: 'inuse-text' }, t('inuse.text', { device, since: fmtDateTime(since) })),
    lastSeen ? h('p', { class: 'hint' }, t('inuse.lastSeen', { when: fmtDateTime(lastSeen) })) : null,
    h('p', { class: 'hint' }, t('inuse.warning')),
    take,
    h('button', { class: 'btn wide', type: 'button', onclick: onCancel }, t('inuse.cancel')))));
  take.focus();
}

export function renderTakenOver(root, { device, onSignInAgain }) {
  const again = h('button', { class: 'btn primary wide', type: 'button', id: 'signin-again', onclick: onSignInAgain },
    t('takenover.again'));
  replace(root, screen(
    h('section', { class: 'auth-notice', role: 'alertdialog', 'aria-labelledby': 'taken-title' },
      h('h1', { id: 'taken-title' }, t('takenover.title')),
      h('p', {}, device ? t('takenover.text', { device }) : t('takenover.textUnknown')),
      again)));
  again.focus();
}

async function beat() {
  if (document.visibilityState !== 'visible') return;
  try { await api('/api/v1/sessions/current/heartbeat', { method: 'POST' }); } catch { /* a 401 is handled by the app */ }
}

function onVisible() { if (document.visibilityState === 'visible') beat(); }

/** While the page is visible, tell the server every few minutes that this device is still in use. */
export function startHeartbeat() {
  stopHeartbeat();
  heartbeatTimer = setInterval(beat, HEARTBEAT_MS);
  document.addEventListener('visibilitychange', onVisible);
}

export function stopHeartbeat() {
  clearInterval(heartbeatTimer);
  document.removeEventListener('visibilitychange', onVisible);
}
