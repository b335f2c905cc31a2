// The list of an item's annotations, a panel over the picture: each one's time on a video, author and
// date, and buttons to go to that time, edit it or delete it.

import { deleteAnnotation } from './annotations.js';
import { h, replace } from './dom.js';
import { fmtClock, fmtDateTime, t } from './i18n.js';
import { messageFor } from './session.js';
import { iconButton, toast } from './widgets.js';

/** The panel, empty: renderAnnotationList fills it. */
export function annotationListPanel() {
  return h('div', { class: 'layer-list', role: 'region', 'aria-label': t('annotation.list') });
}

/** Fill `panel` with `annotations`; `onDeleted` runs after one is deleted (to load them again). */
export function renderAnnotationList(panel, annotations, { onGoto, onEdit, onDeleted }) {
  replace(panel,
    h('h2', {}, t('annotation.list')),
    annotations.length ? h('ul', {}, annotations.map((annotation, i) => h('li', {},
      h('span', { class: 'layer-name' }, `${t('annotation.label')} ${i + 1}`,
        annotation.media_time_s !== null ? ` · ${fmtClock(annotation.media_time_s)}` : '',
        h('small', {}, `${annotation.author_name} · ${fmtDateTime(annotation.updated_at)}`)),
      annotation.media_time_s !== null
        ? iconButton('clock', t('annotation.goto'), () => onGoto(annotation))
        : null,
      iconButton('pen', t('annotation.edit'), () => onEdit(annotation)),
      iconButton('trash', t('annotation.delete'), () => confirmDelete(annotation, onDeleted)))))
      : h('p', { class: 'hint' }, t('annotation.none')));
}

async function confirmDelete(annotation, onDeleted) {
  if (!window.confirm(t('annotation.confirmDelete'))) return;
  try {
    await deleteAnnotation(annotation);
    await onDeleted();
    toast(t('annotation.deleted'));
  } catch (e) {
    toast(messageFor(e), { kind: 'error' });
  }
}
