// Share with the patient: a sheet that makes an expiring link to the selected items (one patient's), shows it
// as a QR code to scan with the patient's phone, copies it, and withdraws it. Also the printable handout.
// The link's token is shown only here, once: the server keeps only its hash (docs/viewer.md).

import { api } from './api.js';
import { h, replace, trapFocus } from './dom.js';
import { fmtDateTime, t } from './i18n.js';
import { messageFor } from './session.js';
import { toast } from './widgets.js';

const DAY = 24 * 3600;
const LIFETIMES = [1, 7, 30];

/** Open the printable handout (A4: clinic, patient, date, drawings burnt in) of 1–4 items in a new tab. */
export function openHandout(items) {
  const query = items.slice(0, 4).map((m) => `m=${encodeURIComponent(m.id)}`).join('&');
  window.open(`/handout?${query}`, '_blank', 'noopener');
}

/** The sheet in `host` for `items` (all of one patient). */
export function openShareDialog(host, items) {
  const lifetime = h('select', { id: 'share-lifetime' },
    LIFETIMES.map((days) => h('option', { value: String(days * DAY), selected: days === 7 }, t('share.days', { n: days }))));
  const body = h('div', { class: 'share-body', id: 'share-body' },
    h('label', { for: 'share-lifetime' }, t('share.lifetime')), lifetime,
    h('p', { class: 'hint' }, t('share.hint', { n: items.length })));
  const create = h('button', { class: 'btn primary', type: 'submit', id: 'share-create' }, t('share.create'));
  const dialog = h('form', { class: 'sheet share-sheet', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'share-title' },
    h('h2', { id: 'share-title' }, t('share.title')), body,
    h('div', { class: 'sheet-actions' },
      h('button', { class: 'btn', type: 'button', id: 'share-close', onclick: () => close() }, t('common.close')), create));
  const backdrop = h('div', { class: 'backdrop' }, dialog);
  const release = trapFocus(dialog);
  let qrUrl = '';
  const close = () => { backdrop.remove(); release(); if (qrUrl) URL.revokeObjectURL(qrUrl); };
  dialog.addEventListener('keydown', (e) => { e.stopPropagation(); if (e.key === 'Escape') close(); });
  dialog.addEventListener('submit', async (e) => {
    e.preventDefault();
    create.disabled = true;
    try {
      const link = await api('/api/v1/share-links', { method: 'POST',
        json: { media_ids: items.map((m) => m.id), expires_in_s: Number(lifetime.value) } });
      qrUrl = URL.createObjectURL(new Blob([link.qr_svg], { type: 'image/svg+xml' }));
      create.remove();
      showLink(body, link, qrUrl);
    } catch (err) {
      create.disabled = false;
      toast(messageFor(err), { kind: 'error' });
    }
  });
  host.append(backdrop);
  lifetime.focus();
}

function showLink(body, link, qrUrl) {
  const field = h('input', { id: 'share-url', type: 'text', readonly: true, value: link.url, 'aria-label': t('share.url'),
    style: { width: '100%', fontSize: '14px' } });
  const status = h('p', { class: 'hint', id: 'share-status', role: 'status' },
    t('share.expires', { when: fmtDateTime(link.expires_at) }));
  const revoke = h('button', { class: 'btn', type: 'button', id: 'share-revoke', style: { color: '#c62828' }, onclick: async () => {
    revoke.disabled = true;
    try {
      await api(`/api/v1/share-links/${link.id}`, { method: 'DELETE' });
      replace(status, t('share.revoked'));
      field.value = '';
      qr.hidden = true;
    } catch (err) {
      revoke.disabled = false;
      toast(messageFor(err), { kind: 'error' });
    }
  } }, t('share.revoke'));
  const qr = h('img', { class: 'share-qr', id: 'share-qr', src: qrUrl, alt: t('share.qr'), width: 220, height: 220,
    style: { display: 'block', margin: '0 auto 12px', background: '#fff' } });
  replace(body, qr, field,
    h('div', { class: 'share-row', style: { display: 'flex', gap: '8px', flexWrap: 'wrap', margin: '12px 0 0' } },
      h('button', { class: 'btn', type: 'button', id: 'share-copy', onclick: async () => {
        try {
          await navigator.clipboard.writeText(link.url);
          toast(t('share.copied'));
        } catch {
          field.select();
        }
      } }, t('share.copy')), revoke),
    status);
}
