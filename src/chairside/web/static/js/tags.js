// The tag sheet: edit one item's tags (any words, separated by commas or 、), with the usual ones
// offered as chips to switch on and off.

import { api } from './api.js';
import { h, trapFocus } from './dom.js';
import { t } from './i18n.js';
import { messageFor } from './session.js';
import { toast } from './widgets.js';

export const SUGGESTED_TAGS = ['初診', '術前', '術中', '術後', '経過', '説明用'];

/** Open the sheet in `host` for `item`, whose tags are `tags`; `onSaved(id, tags)` gets the stored ones. */
export function openTagSheet(host, item, { tags: itemTags, onSaved }) {
  const current = new Set(itemTags);
  const input = h('input', { id: 'tag-input', type: 'text', value: [...current].join(', '),
    'aria-describedby': 'tag-hint' });
  const chips = SUGGESTED_TAGS.map((tag) => h('button', { class: 'chip', type: 'button',
    'aria-pressed': String(current.has(tag)), onclick: (e) => {
      const tags = new Set(input.value.split(/[,、]/).map((s) => s.trim()).filter(Boolean));
      if (tags.has(tag)) tags.delete(tag); else tags.add(tag);
      input.value = [...tags].join(', ');
      e.currentTarget.setAttribute('aria-pressed', String(tags.has(tag)));
    } }, tag));
  const dialog = h('form', { class: 'sheet tag-sheet', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'tag-title' },
    h('h2', { id: 'tag-title' }, t('tags.edit')),
    h('label', { for: 'tag-input' }, t('tags.label')), input,
    h('p', { class: 'hint', id: 'tag-hint' }, t('tags.hint')),
    h('div', { class: 'chips' }, chips),
    h('div', { class: 'sheet-actions' },
      h('button', { class: 'btn', type: 'button', onclick: () => close() }, t('common.cancel')),
      h('button', { class: 'btn primary', type: 'submit' }, t('common.save'))));
  const backdrop = h('div', { class: 'backdrop' }, dialog);
  const release = trapFocus(dialog);
  const close = () => { backdrop.remove(); release(); };
  dialog.addEventListener('keydown', (e) => { e.stopPropagation(); if (e.key === 'Escape') close(); });
  dialog.addEventListener('submit', async (e) => {
    e.preventDefault();
    const tags = input.value.split(/[,、]/).map((s) => s.trim()).filter(Boolean);
    try {
      const saved = await api(`/api/v1/media/${item.id}/tags`, { method: 'PUT', json: { tags } });
      onSaved(item.id, saved.tags);
      close();
      toast(t('tags.saved'));
    } catch (err) {
      toast(messageFor(err), { kind: 'error' });
    }
  });
  host.append(backdrop);
  input.focus();
}
