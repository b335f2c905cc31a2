// The trash: move selected items there (DELETE /api/v1/media/{id}, after a confirmation), list a patient's
// items in it (GET /api/v1/patients/{id}/media?trash=true) and take them out again (POST …/restore). Nothing is
// deleted for good here: purging stays an administrator's API call. Both directions are audited by the server.

import { api } from './api.js';
import { h, replace, trapFocus } from './dom.js';
import { fmtDateTime, fmtDay, fmtDuration, fmtTime, t } from './i18n.js';
import { icon } from './icons.js';
import { messageFor } from './session.js';
import { toast } from './widgets.js';

function sheet(host, id, title, ...content) {
  const dialog = h('div', { class: 'sheet trash-sheet', id, role: 'dialog', 'aria-modal': 'true',
    'aria-labelledby': `${id}-title` }, h('h2', { id: `${id}-title` }, title), ...content);
  const backdrop = h('div', { class: 'backdrop' }, dialog);
  const release = trapFocus(dialog);
  const close = () => { backdrop.remove(); release(); };
  dialog.addEventListener('keydown', (e) => { e.stopPropagation(); if (e.key === 'Escape') close(); });
  host.append(backdrop);
  return { dialog, close };
}

/** Ask, then move `items` to the trash; `onTrashed(ids)` gets those that went. */
export function confirmTrash(host, { items, onTrashed }) {
  const message = h('p', { id: 'trash-question', role: 'alert' }, t('trash.question', { n: items.length }));
  const go = h('button', { class: 'btn primary danger', type: 'button', id: 'trash-confirm', onclick: async () => {
    go.disabled = true;
    const done = [];
    let failure = null; // the others still go: one item gone meanwhile does not hold them back
    for (const item of items) {
      try {
        await api(`/api/v1/media/${item.id}`, { method: 'DELETE' });
        done.push(item.id);
      } catch (err) {
        failure = failure || err;
      }
    }
    if (!failure) {
      close();
      toast(t('trash.done', { n: done.length }));
    } else {
      replace(message, messageFor(failure), done.length ? ` ${t('trash.partly', { n: done.length })}` : '');
      go.remove();
    }
    if (done.length) onTrashed(done);
  } }, icon('trash', { size: 20 }), h('span', {}, t('trash.confirm')));
  const { close } = sheet(host, 'trash-ask', t('trash.askTitle'), message,
    h('p', { class: 'hint' }, t('trash.restorable')),
    h('div', { class: 'sheet-actions' },
      h('button', { class: 'btn', type: 'button', id: 'trash-cancel', onclick: () => close() }, t('common.cancel')), go));
  go.focus();
}

/** The patient's items in the trash, each with Restore; `onRestored(id)` after each one. */
export function openTrashView(host, { patient, onRestored }) {
  const status = h('p', { class: 'hint', id: 'trash-status', role: 'status' }, t('common.loading'));
  const list = h('ul', { class: 'trash-list', id: 'trash-list' });
  const { close } = sheet(host, 'trash-view', t('trash.title', { name: patient.name }),
    h('p', { class: 'hint' }, t('trash.viewHint')), status, list,
    h('div', { class: 'sheet-actions' },
      h('button', { class: 'btn', type: 'button', id: 'trash-close', onclick: () => close() }, t('common.close'))));
  const row = (item) => {
    const video = item.kind === 'video';
    const restore = h('button', { class: 'btn', type: 'button', dataset: { id: item.id }, 'aria-label':
      `${t('trash.restore')}: ${t(video ? 'kind.video' : 'kind.photo')} ${fmtDay(item.captured_at)} ${fmtTime(item.captured_at)}`,
    onclick: async () => {
      restore.disabled = true;
      try {
        await api(`/api/v1/media/${item.id}/restore`, { method: 'POST' });
        li.remove();
        if (!list.children.length) status.textContent = t('trash.empty');
        toast(t('trash.restored'));
        onRestored(item.id);
      } catch (err) {
        restore.disabled = false;
        toast(messageFor(err), { kind: 'error' });
      }
    } }, icon('undo', { size: 20 }), h('span', {}, t('trash.restore')));
    const li = h('li', { class: 'trash-item', dataset: { id: item.id } },
      icon(video ? 'video' : 'photo', { size: 28 }),
      h('span', { class: 'trash-what' },
        h('strong', {}, `${fmtDay(item.captured_at)} ${fmtTime(item.captured_at)}`,
          video && item.duration_s ? ` · ${fmtDuration(item.duration_s)}` : ''),
        h('small', {}, [item.filename, t('trash.deletedAt', { when: fmtDateTime(item.deleted_at) })].join(' · '))),
      restore);
    return li;
  };
  (async () => {
    try {
      const items = [];
      let page = await api(`/api/v1/patients/${patient.id}/media?trash=true&limit=500`);
      items.push(...page.items);
      while (page.next_cursor) {
        page = await api(`/api/v1/patients/${patient.id}/media?trash=true&limit=500&cursor=${encodeURIComponent(page.next_cursor)}`);
        items.push(...page.items);
      }
      status.textContent = items.length ? t('trash.count', { n: items.length }) : t('trash.empty');
      replace(list, items.map(row));
      list.dataset.loaded = '1';
    } catch (err) {
      status.textContent = messageFor(err);
    }
  })();
}
