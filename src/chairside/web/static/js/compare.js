// Two to four items side by side (before/after). Videos play in step: one play, one seek, one speed
// and one frame step control them all. Each cell is labelled (術前 / 術中 / 術後 when the item has that
// tag, else the day it was taken), zooms on its own (wheel, pinch, double tap; its fit button resets it)
// and can be drawn on with the single view's tools: the drawing is stored on that cell's item, at the
// video's time for a video.

import { Sketch } from './annotate.js';
import { annotationToolbar, askText } from './annotation-toolbar.js';
import { annotationsShown, loadAnnotations, setAnnotationsShown, storeAnnotation } from './annotations.js';
import { h, replace, trapFocus } from './dom.js';
import { fmtDateTime, fmtDay, t } from './i18n.js';
import { icon } from './icons.js';
import { controls, playerKey, SyncGroup } from './player.js';
import { messageFor } from './session.js';
import { Stage } from './stage.js';
import { mediaElement } from './viewer.js';
import { iconButton, toast } from './widgets.js';

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
    this.sketch = null;
    this.drawingOn = -1; // the cell being drawn on
    this.stages = items.map((item, i) => new Stage(mediaElement(item), {
      onTap: () => { if (!this.sketch) this.group?.toggle(); },
      onZoom: (scale) => this.zoomed(i, scale),
    }));
    const videos = this.stages.map((s) => s.media).filter((m) => m.tagName === 'VIDEO');
    const fps = Math.max(...items.map((i) => i.fps || 0), 0) || 30;
    this.group = videos.length ? new SyncGroup(videos, fps) : null;
    this.zoomLabels = [];
    this.fitButtons = [];
    this.cells = items.map((item, i) => {
      const stage = this.stages[i];
      const letter = String.fromCharCode(65 + i);
      stage.showLayers = annotationsShown();
      stage.tolerance = 0.75 / fps;
      if (stage.media.tagName === 'VIDEO') stage.time = 0; // a video's drawings show at their own time
      loadAnnotations(stage, item);
      const label = cellLabel(item, tagsOf(item.id));
      this.zoomLabels[i] = h('span', { class: 'zoom-label', 'aria-live': 'polite', hidden: true }, '100%');
      this.fitButtons[i] = iconButton('fit', t('compare.fitCell', { cell: letter }), () => stage.reset(),
        { class: 'btn icon-btn cell-fit', disabled: true, dataset: { cell: String(i) } });
      const tools = h('div', { class: 'cell-tools', role: 'group', 'aria-label': t('compare.cellTools', { cell: letter }) },
        this.zoomLabels[i], this.fitButtons[i],
        iconButton('pen', t('compare.drawCell', { cell: letter }), () => this.startDrawing(i),
          { class: 'btn icon-btn cell-draw', dataset: { cell: String(i) } }));
      return h('figure', { class: 'compare-cell', 'aria-label': label.text, dataset: { cell: String(i), id: item.id } },
        stage.el,
        h('span', { class: `compare-label${label.tagged ? ' tagged' : ''}` }, label.text),
        tools,
        h('figcaption', {}, h('span', { class: 'badge' }, letter),
          `${fmtDateTime(item.captured_at)} · ${t(item.kind === 'video' ? 'kind.video' : 'kind.photo')}`));
    });
    if (this.group) {
      this.group.addEventListener('time', () => this.stages.forEach((s) => {
        if (s.media.tagName === 'VIDEO') { s.time = s.media.currentTime; s.redraw(); }
      }));
    }
    this.status = h('span', { id: 'compare-status' }, this.subtitle());
    this.foot = h('div', { class: 'viewer-foot' }, this.group ? controls(this.group) : null);
    this.el = h('div', { class: `compare n${items.length}`, role: 'dialog', 'aria-modal': 'true',
      'aria-labelledby': 'compare-title', id: 'compare' },
    h('header', { class: 'viewer-bar' },
      h('button', { class: 'btn icon-btn', type: 'button', 'aria-label': t('viewer.close'), title: t('viewer.close'),
        id: 'compare-close', onclick: () => this.close() }, icon('close')),
      h('div', { class: 'viewer-title', id: 'compare-title' }, h('strong', {}, t('compare.title', { n: items.length })),
        this.status)),
    h('div', { class: 'compare-grid' }, this.cells),
    this.foot);
    this.onKey = (e) => this.key(e);
    document.addEventListener('keydown', this.onKey);
    document.body.append(this.el);
    document.body.classList.add('has-overlay');
    this.release = trapFocus(this.el);
    this.el.querySelector('#compare-close').focus();
  }

  /** Under the title: that videos go in step, or (a deep link naming too few) the 2–4 items hint. */
  subtitle() {
    if (this.items.length < 2 || this.items.length > 4) return t('select.compareHint');
    return this.group ? t('compare.synced') : '';
  }

  zoomed(i, scale) {
    const label = this.zoomLabels[i];
    if (!label) return; // the stage lays out before the cell's tools exist
    label.textContent = `${Math.round(scale * 100)}%`;
    label.hidden = scale <= 1.001;
    this.fitButtons[i].disabled = scale <= 1.001;
  }

  key(e) {
    if (e.key === 'Escape') {
      e.preventDefault();
      if (this.sketch) this.stopDrawing(); else this.close();
      return;
    }
    if (this.sketch) return;
    const typing = ['INPUT', 'TEXTAREA', 'SELECT'].includes(e.target.tagName) && e.target.type !== 'range';
    if (typing) return;
    if (this.group && playerKey(e, this.group)) { e.preventDefault(); return; }
    if (e.key === '0') { e.preventDefault(); this.stages.forEach((s) => s.reset()); }
  }

  startDrawing(i) {
    if (this.sketch) return;
    const stage = this.stages[i];
    this.group?.pause();
    stage.reset();
    stage.setDrawing(true);
    this.drawingOn = i;
    this.sketch = new Sketch(stage.ink, {
      onChange: () => stage.redraw(),
      askText: (x, y) => askText(this.el, x, y),
    });
    stage.extraShapes = () => this.sketch?.current() || [];
    stage.redraw();
    this.el.classList.add('is-drawing');
    this.cells[i].classList.add('drawing');
    this.status.textContent = t('compare.drawingOn', { cell: String.fromCharCode(65 + i) });
    this.footBefore = [...this.foot.childNodes];
    replace(this.foot, annotationToolbar(this.sketch,
      { onCancel: () => this.stopDrawing(), onSave: () => this.saveDrawing() }));
    this.foot.querySelector('.tool[aria-pressed="true"]')?.focus();
  }

  stopDrawing() {
    const i = this.drawingOn;
    if (i < 0) return;
    const stage = this.stages[i];
    this.sketch?.destroy();
    this.sketch = null;
    this.drawingOn = -1;
    stage.extraShapes = () => [];
    stage.setDrawing(false);
    stage.redraw();
    this.el.classList.remove('is-drawing');
    this.cells[i].classList.remove('drawing');
    this.status.textContent = this.subtitle();
    replace(this.foot, ...(this.footBefore || []));
    this.cells[i].querySelector('.cell-draw')?.focus();
  }

  async saveDrawing() {
    const i = this.drawingOn;
    const stage = this.stages[i];
    const item = this.items[i];
    const video = stage.media.tagName === 'VIDEO' ? stage.media : null;
    const time = video ? Math.round(video.currentTime * 10000) / 10000 : null;
    try {
      await storeAnnotation({ item, editing: null, shapes: this.sketch.shapes, time });
      this.stopDrawing();
      if (!annotationsShown()) { // what was just saved is shown, as in the single view
        setAnnotationsShown(true);
        this.stages.forEach((s) => { s.showLayers = true; s.redraw(); });
      }
      await loadAnnotations(stage, item);
      toast(t('annotation.saved'));
    } catch (e) {
      toast(messageFor(e), { kind: 'error', ms: 8000 });
    }
  }

  close() {
    document.removeEventListener('keydown', this.onKey);
    this.sketch?.destroy();
    this.sketch = null;
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
