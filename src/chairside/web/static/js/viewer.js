// One photo or video, full screen: play, seek, speed, frame step, zoom and pan, download, save a frame
// as a new photo; and the item's annotations (shown or hidden, listed, drawn on a paused frame or a
// photo and stored apart from the original) and tags, whose pieces are in the modules imported below.

import { Sketch } from './annotate.js';
import { annotationListPanel, renderAnnotationList } from './annotation-list.js';
import { annotationToolbar, askText } from './annotation-toolbar.js';
import { annotationsShown, loadAnnotations, setAnnotationsShown, storeAnnotation } from './annotations.js';
import { url } from './api.js';
import { download, h, replace, trapFocus } from './dom.js';
import { fmtClock, fmtDateTime, fmtDuration, t } from './i18n.js';
import { icon } from './icons.js';
import { noteButton } from './notes.js';
import { controls, playerKey, SyncGroup } from './player.js';
import { messageFor } from './session.js';
import { Stage } from './stage.js';
import { openTagSheet } from './tags.js';
import { openToothChart, toothChips, toothIcon } from './tooth-chart.js';
import { iconButton, toast } from './widgets.js';

export function mediaElement(item) {
  const label = `${t(item.kind === 'video' ? 'kind.video' : 'kind.photo')} ${fmtDateTime(item.captured_at)}`;
  if (item.kind === 'video') {
    // The thumbnail (a frame that is not black) is shown until the video plays: not the clip's black first frame.
    return h('video', { class: 'media', preload: 'metadata', playsinline: true, src: url.content(item.id),
      poster: url.thumbnail(item.id), 'aria-label': label, disablepictureinpicture: true });
  }
  return h('img', { class: 'media', src: url.display(item.id), alt: label, draggable: 'false', decoding: 'async' });
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
    this.stage = new Stage(media, {
      onTap: () => {
        if (this.sketch) return;
        if (this.group) this.group.toggle(); else this.el.classList.toggle('bars-hidden');
      },
      onSwipe: (direction) => { if (!this.sketch) this.go(direction); },
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
      // Tooth numbers and the item's note (tooth-chart.js, notes.js)
      h('button', { class: 'btn icon-btn', type: 'button', id: 'teeth-button', 'aria-label': t('teeth.edit'),
        title: t('teeth.edit'), onclick: () => openToothChart(this.el, item, { onSaved: () => this.paintTeeth() }) },
      toothIcon()),
      noteButton(item, this.el),
      iconButton('download', t('viewer.download'), () => download(url.content(item.id), item.filename)),
      iconButton('fullscreen', t('viewer.fullscreen'), () => this.fullscreen()));
    const n = this.items.length;
    this.el.classList.toggle('is-video', item.kind === 'video');
    this.el.classList.remove('playing');
    replace(this.el,
      h('header', { class: 'viewer-bar' },
        iconButton('close', t('viewer.close'), () => this.close(), { id: 'viewer-close' }),
        h('div', { class: 'viewer-title', id: 'viewer-title' },
          h('strong', {}, fmtDateTime(item.captured_at)),
          h('span', {}, [t(item.kind === 'video' ? 'kind.video' : 'kind.photo'),
            item.duration_s ? fmtDuration(item.duration_s) : null, item.filename].filter(Boolean).join(' · ')),
          this.teethEl = h('div', { class: 'viewer-teeth', id: 'viewer-teeth' }, toothChips(item.teeth))),
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
    const group = this.group; // a paused video's late 'state' event must not touch the next item's class
    group.addEventListener('state', () => { if (this.group === group) this.el.classList.toggle('playing', group.playing); });
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
    setAnnotationsShown(this.stage.showLayers);
    button.setAttribute('aria-pressed', String(this.stage.showLayers));
    button.replaceChildren(icon(this.stage.showLayers ? 'eye' : 'eyeOff'));
    this.stage.redraw();
  }

  toggleAnnotationList() {
    if (this.annotationList) { this.annotationList.remove(); this.annotationList = null; return; }
    this.annotationList = annotationListPanel();
    this.body.append(this.annotationList);
    this.renderAnnotationList();
  }

  renderAnnotationList() {
    renderAnnotationList(this.annotationList, this.stage.layers, {
      onGoto: (annotation) => { this.group?.pause(); this.group?.seek(annotation.media_time_s); },
      onEdit: (annotation) => this.startAnnotating(annotation),
      onDeleted: async () => this.annotationsLoaded(await loadAnnotations(this.stage, this.item)),
    });
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
    replace(this.foot, annotationToolbar(this.sketch,
      { onCancel: () => this.stopAnnotating(), onSave: () => this.saveAnnotation() }));
    this.foot.querySelector('.tool[aria-pressed="true"]')?.focus();
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
      await storeAnnotation({ item: this.item, editing: this.editing, shapes, time });
      this.stopAnnotating();
      if (!this.stage.showLayers) this.toggleAnnotations(this.el.querySelector('#toggle-drawings'));
      this.annotationsLoaded(await loadAnnotations(this.stage, this.item));
      toast(t('annotation.saved'));
    } catch (e) {
      toast(messageFor(e), { kind: 'error', ms: 8000 });
    }
  }

  paintTeeth() {
    replace(this.teethEl, toothChips(this.item.teeth));
  }

  editTags() {
    const item = this.item;
    openTagSheet(this.el, item, { tags: this.tagsOf(item.id), onSaved: (id, tags) => this.onTags(id, tags) });
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
