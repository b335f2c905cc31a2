// The language of the user interface, Japanese (first, the default) or English, the lookup of its
// strings (the catalogues are messages/ja.js and messages/en.js), and the formats of dates, times and
// sizes. The choice is kept in localStorage; times are shown in Japan time, as in the clinic.

import ja from './messages/ja.js';
import en from './messages/en.js';

const LANG_KEY = 'chairside.lang';
const TIME_ZONE = 'Asia/Tokyo';
const listeners = [];

export const DICTIONARY = { ja, en };

export function getLang() {
  const saved = localStorage.getItem(LANG_KEY);
  return saved === 'en' ? 'en' : 'ja';
}

export function applyLang() {
  document.documentElement.lang = getLang();
}

export function setLang(lang) {
  localStorage.setItem(LANG_KEY, lang);
  applyLang();
  for (const fn of listeners) fn(lang);
}

export function onLangChange(fn) { listeners.push(fn); }

const plurals = new Map();

/**
 * The string for `key` in the current language, with {name} placeholders filled in. A message may
 * be an object of plural forms ({ one, other }, as Intl.PluralRules names them), chosen by params.n.
 */
export function t(key, params = {}) {
  let text = DICTIONARY[getLang()][key] ?? DICTIONARY.ja[key] ?? key;
  if (typeof text === 'object') {
    const lang = getLang();
    if (!plurals.has(lang)) plurals.set(lang, new Intl.PluralRules(lang));
    text = text[plurals.get(lang).select(Number(params.n ?? 0))] ?? text.other;
  }
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

const locale = () => (getLang() === 'ja' ? 'ja-JP' : 'en-GB');
const formats = new Map();
function format(options) {
  const key = locale() + JSON.stringify(options);
  if (!formats.has(key)) formats.set(key, new Intl.DateTimeFormat(locale(), { timeZone: TIME_ZONE, ...options }));
  return formats.get(key);
}

const asDate = (value) => (value instanceof Date ? value
  : /^\d{4}-\d{2}-\d{2}$/.test(value) ? new Date(`${value}T12:00:00+09:00`) : new Date(value));

/** The Japan-time calendar day of an instant, as YYYY-MM-DD (for grouping the timeline). */
let dayFormat = null;
export function dayKey(iso) {
  dayFormat ||= new Intl.DateTimeFormat('en-CA', { timeZone: TIME_ZONE, year: 'numeric', month: '2-digit',
    day: '2-digit' });
  const parts = Object.fromEntries(dayFormat.formatToParts(asDate(iso)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}`;
}

/** Build the date formats while the first requests are in flight: the first one costs tens of ms. */
export function warmFormats() {
  const now = new Date();
  dayKey(now);
  fmtDay(now);
  fmtTime(now);
  fmtDateTime(now);
}

export function fmtDay(value) {
  return format({ year: 'numeric', month: 'long', day: 'numeric', weekday: 'short' }).format(asDate(value));
}

export function fmtTime(value) {
  return format({ hour: '2-digit', minute: '2-digit', hour12: false }).format(asDate(value));
}

export function fmtDateTime(value) {
  if (!value) return '';
  return format({ year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false })
    .format(asDate(value));
}

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** m:ss.cc — precise enough to tell frames apart. */
export function fmtClock(seconds) {
  const value = Number.isFinite(seconds) ? Math.max(0, seconds) : 0;
  const cs = Math.floor(value * 100 + 1e-6);
  const m = Math.floor(cs / 6000);
  const s = Math.floor((cs % 6000) / 100);
  return `${m}:${String(s).padStart(2, '0')}.${String(cs % 100).padStart(2, '0')}`;
}

export function fmtBytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = n;
  let i = 0;
  while (value >= 1000 && i < units.length - 1) { value /= 1000; i += 1; }
  return `${value.toFixed(value < 10 && i ? 1 : 0)} ${units[i]}`;
}

export function fmtBirth(birth) {
  if (!birth) return '';
  const [y, m, d] = birth.split('-').map(Number);
  const today = new Date();
  let age = today.getFullYear() - y;
  if (today.getMonth() + 1 < m || (today.getMonth() + 1 === m && today.getDate() < d)) age -= 1;
  return getLang() === 'ja'
    ? `${y}年${m}月${d}日生（${age}歳）`
    : `born ${format({ year: 'numeric', month: 'short', day: 'numeric' }).format(asDate(birth))} (${age})`;
}
