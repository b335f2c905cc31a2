// Small pieces shared by the screens: language switch, icon buttons, toasts, the quota banner.

import { api } from './api.js';
import { h, replace } from './dom.js';
import { icon } from './icons.js';
import { fmtDay, getLang, setLang, t } from './i18n.js';

/** The language button; `onSwitched` runs after the switch (a sheet holding the button closes). */
export function langSwitch({ onSwitched = () => {}, id = 'lang-switch' } = {}) {
  const other = getLang() === 'ja' ? 'en' : 'ja';
  return h('button', {
    class: 'btn ghost lang-switch', type: 'button', lang: other, id,
    'aria-label': t('lang.switchTo'), onclick: () => { setLang(other); onSwitched(); },
  }, icon('globe', { size: 20 }), h('span', {}, other === 'en' ? 'English' : '日本語'));
}

/** A button showing only an icon; `label` is its accessible name and its tooltip. */
export function iconButton(name, label, onclick, attrs = {}) {
  return h('button', { class: 'btn icon-btn', type: 'button', 'aria-label': label, title: label, onclick, ...attrs },
    icon(name));
}

let toastRegion = null;

export function toast(message, { kind = 'info', ms = 4000 } = {}) {
  if (!toastRegion || !toastRegion.isConnected) {
    toastRegion = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(toastRegion);
  }
  const item = h('div', { class: `toast ${kind}` }, message);
  toastRegion.append(item);
  setTimeout(() => item.remove(), ms);
}

const DISMISS_KEY = 'chairside.quotaDismissed';
const WARN_PERCENT = 80;

/**
 * The "plan nearly full" banner, from GET /api/v1/quota (and the newest notice). Hidden when the
 * server has no quota API (404), below the first notice threshold, or when dismissed today.
 */
export async function renderQuotaBanner(slot) {
  let quota = null;
  let notice = null;
  try {
    quota = await api('/api/v1/quota');
  } catch {
    replace(slot);
    slot.hidden = true;
    return null;
  }
  try {
    const notices = await api('/api/v1/notices?limit=1');
    notice = notices.items?.[0] || null;
  } catch { /* notices are optional */ }
  const full = quota.percent >= 100;
  const today = new Date().toISOString().slice(0, 10);
  const dismissed = localStorage.getItem(DISMISS_KEY) === `${today}:${Math.floor(quota.percent)}`;
  if ((quota.percent < WARN_PERCENT && !full) || (dismissed && !full)) {
    slot.hidden = true;
    replace(slot);
    return quota;
  }
  const params = {
    used: quota.used_hours.toLocaleString(), plan: quota.plan_hours.toLocaleString(),
    percent: quota.percent.toFixed(1), left: quota.remaining_hours.toLocaleString(),
  };
  const text = [full ? t('quota.full', params) : t('quota.near', params)];
  if (!full && quota.forecast_full_on) text.push(t('quota.forecast', { day: fmtDay(quota.forecast_full_on) }));
  text.push(t('quota.action'));
  slot.className = `banner ${full ? 'danger' : 'warn'}`;
  slot.hidden = false;
  slot.dataset.percent = String(quota.percent);
  if (notice) slot.dataset.notice = notice.id;
  replace(slot,
    h('span', { class: 'banner-text', role: 'status' }, text.join(' ')),
    full ? null : h('button', { class: 'btn ghost small', type: 'button', 'aria-label': t('quota.dismiss'), onclick: () => {
      localStorage.setItem(DISMISS_KEY, `${today}:${Math.floor(quota.percent)}`);
      slot.hidden = true;
    } }, icon('close', { size: 18 })));
  return quota;
}
