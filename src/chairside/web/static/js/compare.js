// Two or four items side by side (before/after). Videos play in step: one play, one seek, one speed
// and one frame step control them all. Each picture zooms on its own; annotations are shown. Each cell
// is labelled: 術前 / 術中 / 術後 when the item has that tag, else the day it was taken.

import { annotationsShown, loadAnnotations } from './annotations.js';
import { h, replace, trapFocus } from './dom.js';
import { fmtDateTime, fmtDay, t } from './i18n.js';
import { icon } from './icons.js';
import { controls, playerKey, SyncGroup } from './player.js';
import { Stage } from './stage.js';
import { mediaElement } from './viewer.js';

/** The stage tags that name a moment of treatment, in the order they can be told apart. */
export const STAGE_TAGS = ['術前', '術中', '術後'];

/** A cell's label: its treatment-stage tag (術前/術中/術後), else the day it was taken. */
export function cellLabel(item, tags) {
  const stage = STAGE_TAGS.find((tag) => tags.includes(tag));
  return stage ? { text: stage, tagged: true } : { text: fmtDay(item.captured_at), tagged: false };
}

export class Compare {
  constructor({ items, onClose, tagsOf = () => [] }) {
    this.items = items;
    this.onClose = onClose;
    this.stages = items.map((item) => new Stage(mediaElement(item), { onTap: () => this.group?.toggle() }));
    const videos = this.stages.map((s) => s.media).filter((m) => m.tagName === 'VIDEO');
    const fps = Math.max(...items.map((i) => i.fps || 0), 0) || 30;
    this.group = videos.length ? new SyncGroup(videos, fps) : null;
    const cells = items.map((item, i) => {
      const stage = this.stages[i];
      stage.showLayers = annotationsShown();
      stage.tolerance = 0.75 / fps;
      loadAnnotations(stage, item);
      const label = cellLabel(item, tagsOf(item.id));
      return h('figure', { class: 'compare-cell', 'aria-label': label.text }, stage.el,
        h('span', { class: `compare-label${label.tagged ? ' tagged' : ''}` }, label.text),
        h('figcaption', {}, h('span', { class: 'badge' }, String.fromCharCode(65 + i)),
          `${fmtDateTime(item.captured_at)} · ${t(item.kind === 'video' ? 'kind.video' : 'kind.photo')}`));
    });
    if (this.group) {
      this.group.addEventListener('time', () => this.stages.forEach((s) => {
        if (s.media.tagName === 'VIDEO') { s.time = s.media.currentTime; s.redraw(); }
      }));
    }
    this.el = h('div', { class: `compare n${items.length}`, role: 'dialog', 'aria-modal': 'true',
      'aria-labelledby': 'compare-title', id: 'compare' },
    h('header', { class: 'viewer-bar' },
      h('button', { class: 'btn icon-btn', type: 'button', 'aria-label': t('viewer.close'), title: t('viewer.close'),
        id: 'compare-close', onclick: () => this.close() }, icon('close')),
      h('div', { class: 'viewer-title', id: 'compare-title' }, h('strong', {}, t('compare.title', { n: items.length })),
        h('span', {}, this.group ? t('compare.synced') : ''))),
    h('div', { class: 'compare-grid' }, cells),
    h('div', { class: 'viewer-foot' }, this.group ? controls(this.group) : null));
    this.onKey = (e) => {
      if (e.key === 'Escape') { e.preventDefault(); this.close(); return; }
      if (this.group && playerKey(e, this.group)) e.preventDefault();
    };
    document.addEventListener('keydown', this.onKey);
    document.body.append(this.el);
    document.body.classList.add('has-overlay');
    this.release = trapFocus(this.el);
    this.el.querySelector('#compare-close').focus();
  }

  close() {
    document.removeEventListener('keydown', this.onKey);
    this.group?.pause();
    for (const s of this.stages) {
      s.destroy();
      if (s.media.tagName === 'VIDEO') { s.media.removeAttribute('src'); s.media.load(); }
    }
    replace(this.el);
    this.el.remove();
    document.body.classList.remove('has-overlay');
    this.release();
    this.onClose();
  }
}
