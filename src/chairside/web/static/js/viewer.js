// One photo or video, full screen: play, seek, speed, frame step, zoom and pan, annotate a paused frame
// or a photo (an annotation is stored apart from the original), tags, download, save a frame as a new photo.

import { api, url } from './api.js';
import { download, h, replace, trapFocus } from './dom.js';
import { COLORS, Sketch, TOOLS, WIDTHS } from './annotate.js';
import { fmtClock, fmtDateTime, fmtDuration, t } from './i18n.js';
import { icon } from './icons.js';
import { controls, playerKey, SyncGroup } from './player.js';
import { messageFor } from './session.js';
import { Stage } from './stage.js';
import { toast } from './widgets.js';

const SHOW_KEY = 'chairside.showDrawings'; // a saved preference: the key keeps its first name
export const SUGGESTED_TAGS = ['初診', '術前', '術中', '術後', '経過', '説明用'];

export const annotationsShown = () => localStorage.getItem(SHOW_KEY) !== '0';

export function mediaElement(item) {
  const label = `${t(item.kind === 'video' ? 'kind.video' : 'kind.photo')} ${fmtDateTime(item.captured_at)}`;
  if (item.kind === 'video') {
    return h('video', { class: 'media', preload: 'metadata', playsinline: true, src: url.content(item.id),
      'aria-label': label, disablepictureinpicture: true });
  }
  return h('img', { class: 'media', src: url.display(item.id), alt: label, draggable: 'false', decoding: 'async' });
}

export async function loadAnnotations(stage, item) {
  try {
    const list = await api(`/api/v1/media/${item.id}/annotations`);
    stage.layers = list.items;
  } catch {
    stage.layers = [];
  }
  stage.redraw();
  return stage.layers;
}

function iconButton(name, label, onclick, attrs = {}) {
  return h('button', { class: 'btn icon-btn', type: 'button', 'aria-label': label, title: label, onclick, ...attrs },
    icon(name));
}

/** Ask for an annotation's text in a small field where the user tapped. */
function askText(host, x, y) {
  return new Promise((resolve) => {
    const input = h('input', { class: 'ink-text', type: 'text', maxlength: 500, 'aria-label': t('annotation.textPrompt'),
      placeholder: t('annotation.textPrompt'), style: { left: `${x}px`, top: `${y}px` } });
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      input.remove();
      resolve(value.trim());
    };
    input.addEventListener('keydown', (e) => {
      e.stopPropagation();
      if (e.key === 'Enter') finish(input.value);
      if (e.key === 'Escape') finish('');
    });
    input.addEventListener('blur', () => finish(input.value));
    host.append(input);
    setTimeout(() => input.focus(), 0);
  });
}

export class Viewer {
  constructor({ items, index, onClose, onIndex, onSaveFrame, onTags, tagsOf }) {
    this.items = items;
    this.index = index;
    this.onClose = onClose;
    this.onIndex = onIndex;
    this.onSaveFrame = onSaveFrame;
    this.onTags = onTags;
    this.tagsOf = tagsOf;
    this.el = h('div', { class: 'viewer', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'viewer-title',
      id: 'viewer' });
    this.onKey = (e) => this.key(e);
    document.addEventListener('keydown', this.onKey); // wherever focus is, while the viewer is open
    document.body.append(this.el);
    document.body.classList.add('has-overlay');
    this.release = trapFocus(this.el);
    this.show(index);
  }

  get item() { return this.items[this.index]; }

  close() {
    document.removeEventListener('keydown', this.onKey);
    this.teardown();
    this.el.remove();
    document.body.classList.remove('has-overlay');
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    this.release();
    this.onClose();
  }

  teardown() {
    this.sketch?.destroy();
    this.sketch = null;
    this.stage?.destroy();
    if (this.video) { this.video.pause(); this.video.removeAttribute('src'); this.video.load(); }
    this.video = null;
    this.group = null;
  }

  show(index) {
    this.teardown();
    this.index = index;
    const item = this.item;
    this.onIndex(item);
    const media = mediaElement(item);
    this.stage = new Stage(media, { onTap: () => { if (this.group && !this.sketch) this.group.toggle(); },
      onZoom: (s) => { if (this.zoomLabel) this.zoomLabel.textContent = `${Math.round(s * 100)}%`; } });
    this.stage.showLayers = annotationsShown();
    this.editing = null;
    this.body = h('div', { class: 'viewer-body' }, this.stage.el);
    this.foot = h('div', { class: 'viewer-foot' });
    this.annotationCount = h('span', { class: 'count' }, '0');
    const eye = iconButton(this.stage.showLayers ? 'eye' : 'eyeOff', t('annotation.toggle'), () => this.toggleAnnotations(eye),
      { 'aria-pressed': String(this.stage.showLayers), id: 'toggle-drawings' });
    this.actions = h('div', { class: 'viewer-actions', role: 'toolbar', 'aria-label': t('viewer.actions') },
      eye,
      h('button', { class: 'btn icon-btn with-count', type: 'button', id: 'layers-button', 'aria-label': t('annotation.list'),
        title: t('annotation.list'), onclick: () => this.toggleAnnotationList() }, icon('layers'), this.annotationCount),
      iconButton('pen', t('annotation.start'), () => this.startAnnotating(), { id: 'draw-button' }),
      iconButton('tag', t('tags.edit'), () => this.editTags(), { id: 'tags-button' }),
      iconButton('download', t('viewer.download'), () => download(url.content(item.id), item.filename)),
      iconButton('fullscreen', t('viewer.fullscreen'), () => this.fullscreen()));
    const n = this.items.length;
    this.el.classList.toggle('is-video', item.kind === 'video');
    replace(this.el,
      h('header', { class: 'viewer-bar' },
        iconButton('close', t('viewer.close'), () => this.close(), { id: 'viewer-close' }),
        h('div', { class: 'viewer-title', id: 'viewer-title' },
          h('strong', {}, fmtDateTime(item.captured_at)),
          h('span', {}, [t(item.kind === 'video' ? 'kind.video' : 'kind.photo'),
            item.duration_s ? fmtDuration(item.duration_s) : null, item.filename].filter(Boolean).join(' · '))),
        h('div', { class: 'viewer-nav' },
          iconButton('back', t('viewer.prev'), () => this.go(-1), { disabled: index === 0 }),
          h('span', { class: 'pos' }, `${index + 1} / ${n}`),
          iconButton('next', t('viewer.next'), () => this.go(1), { disabled: index >= n - 1 }))),
      this.actions, this.body, this.foot);
    if (item.kind === 'video') this.setupVideo(media, item);
    else this.setupPhoto();
    loadAnnotations(this.stage, item).then((annotations) => this.annotationsLoaded(annotations));
    this.el.querySelector('#viewer-close').focus();
  }

  annotationsLoaded(annotations) {
    this.annotationCount.textContent = String(annotations.length);
    this.el.dataset.layers = String(annotations.length);
    this.controlsBar?.refreshMarks?.();
    if (this.annotationList) this.renderAnnotationList();
  }

  setupVideo(video, item) {
    this.video = video;
    this.group = new SyncGroup([video], item.fps || 30);
    this.stage.tolerance = 0.75 / this.group.fps;
    const sync = () => { this.stage.time = video.currentTime; this.stage.redraw(); };
    this.group.addEventListener('time', sync);
    this.group.addEventListener('firstframe', (e) => { this.el.dataset.firstFrameMs = e.detail.toFixed(1); });
    this.stage.time = 0;
    this.controlsBar = controls(this.group, {
      markers: () => this.stage.layers.filter((l) => l.media_time_s !== null).map((l) => l.media_time_s),
      extra: [iconButton('camera', t('player.saveFrame'), () => this.saveFrame(), { id: 'save-frame' })],
    });
    replace(this.foot, this.controlsBar);
  }

  setupPhoto() {
    this.zoomLabel = h('span', { class: 'zoom-label', 'aria-live': 'polite' }, '100%');
    replace(this.foot, h('div', { class: 'photo-controls', role: 'group', 'aria-label': t('photo.zoom') },
      iconButton('zoomOut', t('photo.zoomOut'), () => this.stage.zoomBy(1 / 1.5)),
      this.zoomLabel,
      iconButton('zoomIn', t('photo.zoomIn'), () => this.stage.zoomBy(1.5)),
      iconButton('fit', t('photo.fit'), () => this.stage.reset()),
      h('span', { class: 'hint' }, t('photo.hint'))));
  }

  go(delta) {
    const next = this.index + delta;
    if (next >= 0 && next < this.items.length) this.show(next);
  }

  toggleAnnotations(button) {
    this.stage.showLayers = !this.stage.showLayers;
    localStorage.setItem(SHOW_KEY, this.stage.showLayers ? '1' : '0');
    button.setAttribute('aria-pressed', String(this.stage.showLayers));
    button.replaceChildren(icon(this.stage.showLayers ? 'eye' : 'eyeOff'));
    this.stage.redraw();
  }

  toggleAnnotationList() {
    if (this.annotationList) { this.annotationList.remove(); this.annotationList = null; return; }
    this.annotationList = h('div', { class: 'layer-list', role: 'region', 'aria-label': t('annotation.list') });
    this.body.append(this.annotationList);
    this.renderAnnotationList();
  }

  renderAnnotationList() {
    const annotations = this.stage.layers;
    replace(this.annotationList,
      h('h2', {}, t('annotation.list')),
      annotations.length ? h('ul', {}, annotations.map((annotation, i) => h('li', {},
        h('span', { class: 'layer-name' }, `${t('annotation.label')} ${i + 1}`,
          annotation.media_time_s !== null ? ` · ${fmtClock(annotation.media_time_s)}` : '',
          h('small', {}, `${annotation.author_name} · ${fmtDateTime(annotation.updated_at)}`)),
        annotation.media_time_s !== null
          ? iconButton('clock', t('annotation.goto'), () => { this.group?.pause(); this.group?.seek(annotation.media_time_s); })
          : null,
        iconButton('pen', t('annotation.edit'), () => this.startAnnotating(annotation)),
        iconButton('trash', t('annotation.delete'), () => this.deleteAnnotation(annotation)))))
        : h('p', { class: 'hint' }, t('annotation.none')));
  }

  async deleteAnnotation(annotation) {
    if (!window.confirm(t('annotation.confirmDelete'))) return;
    try {
      await api(`/api/v1/annotations/${annotation.id}`, { method: 'DELETE' });
      this.annotationsLoaded(await loadAnnotations(this.stage, this.item));
      toast(t('annotation.deleted'));
    } catch (e) {
      toast(messageFor(e), { kind: 'error' });
    }
  }

  startAnnotating(annotation = null) {
    if (this.sketch) return;
    this.annotationList?.remove();
    this.annotationList = null;
    if (this.group) {
      this.group.pause();
      if (annotation && annotation.media_time_s !== null) this.group.seek(annotation.media_time_s);
    }
    this.editing = annotation;
    this.stage.setDrawing(true);
    this.stage.reset();
    this.sketch = new Sketch(this.stage.ink, {
      onChange: () => this.stage.redraw(),
      askText: (x, y) => askText(this.el, x, y),
    });
    if (annotation) {
      this.sketch.shapes = structuredClone(annotation.shapes);
      this.stage.hiddenLayer = annotation.id;
    }
    this.stage.extraShapes = () => this.sketch?.current() || [];
    this.stage.redraw();
    this.el.classList.add('is-drawing');
    this.footBefore = [...this.foot.childNodes];
    replace(this.foot, this.annotationTools());
    this.foot.querySelector('.tool[aria-pressed="true"]')?.focus();
  }

  annotationTools() {
    const pressed = (group, value) => group.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.value === value)));
    const tools = TOOLS.map((tool) => h('button', { class: 'btn icon-btn tool', type: 'button', dataset: { value: tool },
      'aria-label': t(`annotation.tool.${tool}`), title: t(`annotation.tool.${tool}`), 'aria-pressed': String(tool === this.sketch.tool),
      onclick: () => { this.sketch.tool = tool; pressed(tools, tool); } }, icon(tool)));
    const colors = COLORS.map((color) => h('button', { class: 'swatch', type: 'button', dataset: { value: color },
      style: { background: color }, 'aria-label': t(`annotation.color.${color.slice(1)}`), 'aria-pressed': String(color === this.sketch.color),
      onclick: () => { this.sketch.color = color; pressed(colors, color); } }));
    const widths = Object.entries(WIDTHS).map(([name, w]) => h('button', { class: `btn width ${name}`, type: 'button',
      dataset: { value: name }, 'aria-label': t(`annotation.width.${name}`), title: t(`annotation.width.${name}`),
      'aria-pressed': String(w === this.sketch.width),
      onclick: () => { this.sketch.width = w; pressed(widths, name); } }, h('span', { class: 'line' })));
    return h('div', { class: 'draw-tools', role: 'toolbar', 'aria-label': t('annotation.tools') },
      h('div', { class: 'tool-group' }, tools),
      h('div', { class: 'tool-group colors' }, colors),
      h('div', { class: 'tool-group' }, widths),
      h('div', { class: 'tool-group' },
        iconButton('undo', t('annotation.undo'), () => this.sketch.undo()),
        iconButton('trash', t('annotation.clear'), () => this.sketch.clear())),
      h('span', { class: 'spacer' }),
      h('button', { class: 'btn', type: 'button', onclick: () => this.stopAnnotating() }, t('common.cancel')),
      h('button', { class: 'btn primary', type: 'button', id: 'draw-save', onclick: () => this.saveAnnotation() },
        t('annotation.save')));
  }

  stopAnnotating() {
    this.sketch?.destroy();
    this.sketch = null;
    this.editing = null;
    this.stage.hiddenLayer = null;
    this.stage.extraShapes = () => [];
    this.stage.setDrawing(false);
    this.stage.redraw();
    this.el.classList.remove('is-drawing');
    replace(this.foot, ...(this.footBefore || []));
    this.el.querySelector('#draw-button')?.focus();
  }

  async saveAnnotation() {
    const shapes = this.sketch.shapes;
    const time = this.video ? Math.round(this.video.currentTime * 10000) / 10000 : null;
    try {
      if (this.editing && !shapes.length) {
        await api(`/api/v1/annotations/${this.editing.id}`, { method: 'DELETE' });
      } else if (this.editing) {
        await api(`/api/v1/annotations/${this.editing.id}`, { method: 'PUT',
          json: { shapes, media_time_s: this.editing.media_time_s ?? time, version: this.editing.version } });
      } else if (shapes.length) {
        await api(`/api/v1/media/${this.item.id}/annotations`, { method: 'POST', json: { shapes, media_time_s: time } });
      }
      this.stopAnnotating();
      if (!this.stage.showLayers) this.toggleAnnotations(this.el.querySelector('#toggle-drawings'));
      this.annotationsLoaded(await loadAnnotations(this.stage, this.item));
      toast(t('annotation.saved'));
    } catch (e) {
      toast(messageFor(e), { kind: 'error', ms: 8000 });
    }
  }

  async editTags() {
    const item = this.item;
    const current = new Set(this.tagsOf(item.id));
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
        this.onTags(item.id, saved.tags);
        close();
        toast(t('tags.saved'));
      } catch (err) {
        toast(messageFor(err), { kind: 'error' });
      }
    });
    this.el.append(backdrop);
    input.focus();
  }

  async saveFrame() {
    const video = this.video;
    if (!video || !video.videoWidth) return;
    this.group.pause();
    const canvas = h('canvas', { width: video.videoWidth, height: video.videoHeight });
    canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.92));
    const at = new Date(new Date(this.item.captured_at).getTime() + video.currentTime * 1000);
    const stem = (this.item.filename || 'video').replace(/\.[^.]+$/, '');
    const name = `${stem}_${fmtClock(video.currentTime).replace(/[:.]/g, '-')}.jpg`;
    this.onSaveFrame(new File([blob], name, { type: 'image/jpeg', lastModified: at.getTime() }), at);
    toast(t('player.frameSaving'));
  }

  fullscreen() {
    if (document.fullscreenElement) { document.exitFullscreen().catch(() => {}); return; }
    if (this.el.requestFullscreen) this.el.requestFullscreen().catch(() => this.video?.webkitEnterFullscreen?.());
    else this.video?.webkitEnterFullscreen?.();
  }

  key(event) {
    if (event.key === 'Escape') {
      event.preventDefault();
      if (this.sketch) this.stopAnnotating();
      else if (!document.fullscreenElement) this.close();
      return;
    }
    if (this.sketch) return;
    const typing = ['INPUT', 'TEXTAREA', 'SELECT'].includes(event.target.tagName) && event.target.type !== 'range';
    if (typing) return;
    if (this.group && playerKey(event, this.group)) { event.preventDefault(); return; }
    let used = true;
    switch (event.key) {
      case 'PageUp': this.go(-1); break;
      case 'PageDown': this.go(1); break;
      case 'ArrowLeft': if (!this.group) this.go(-1); else used = false; break;
      case 'ArrowRight': if (!this.group) this.go(1); else used = false; break;
      case '+': case '=': this.stage.zoomBy(1.5); break;
      case '-': this.stage.zoomBy(1 / 1.5); break;
      case '0': this.stage.reset(); break;
      case 'f': this.fullscreen(); break;
      default: used = false;
    }
    if (used) event.preventDefault();
  }
}
