// A picture (photo or video) fitted to its box, zoomable (wheel, pinch, double tap, buttons) and
// pannable, with the annotations' canvas on top that zooms along with it.

import { clamp, h } from './dom.js';
import { renderShapes } from './annotate.js';

const MAX_SCALE = 8;
const TAP_MS = 260;
const SWIPE_PX = 60; // a quick horizontal stroke this long, at fit size, goes to the next or previous item
const SWIPE_MS = 700;

export class Stage {
  constructor(media, { onTap = () => {}, onZoom = () => {}, onSwipe = null } = {}) {
    this.media = media;
    this.onTap = onTap;
    this.onSwipe = onSwipe;
    this.onZoom = onZoom;
    this.ink = h('canvas', { class: 'ink', 'aria-hidden': 'true' });
    this.content = h('div', { class: 'stage-content' }, media, this.ink);
    this.el = h('div', { class: 'stage' }, this.content);
    this.scale = 1;
    this.x = 0;
    this.y = 0;
    this.fit = { x: 0, y: 0, w: 0, h: 0 };
    this.layers = [];
    this.showLayers = true;
    this.time = null; // the video's current time; annotations belong to a time
    this.tolerance = 0.05;
    this.extraShapes = () => [];
    this.hiddenLayer = null; // the annotation being edited is drawn by the editor instead
    this.drawing = false;
    this.pointers = new Map();
    this.lastTap = 0;
    this.tapTimer = 0;
    this.resize = new ResizeObserver(() => this.layout());
    this.resize.observe(this.el);
    for (const type of ['loadedmetadata', 'load', 'resize']) media.addEventListener(type, () => this.layout());
    this.el.addEventListener('pointerdown', (e) => this.down(e));
    this.el.addEventListener('pointermove', (e) => this.move(e));
    this.el.addEventListener('pointerup', (e) => this.up(e));
    this.el.addEventListener('pointercancel', (e) => this.up(e));
    this.el.addEventListener('wheel', (e) => this.wheel(e), { passive: false });
  }

  destroy() { this.resize.disconnect(); }

  natural() {
    const m = this.media;
    return m.tagName === 'VIDEO' ? [m.videoWidth, m.videoHeight] : [m.naturalWidth, m.naturalHeight];
  }

  layout() {
    const W = this.el.clientWidth;
    const H = this.el.clientHeight;
    const [nw, nh] = this.natural();
    if (!W || !H || !nw || !nh) return;
    const s = Math.min(W / nw, H / nh);
    const w = Math.round(nw * s);
    const hh = Math.round(nh * s);
    this.fit = { x: (W - w) / 2, y: (H - hh) / 2, w, h: hh };
    this.content.style.width = `${w}px`;
    this.content.style.height = `${hh}px`;
    const dpr = Math.min(3, window.devicePixelRatio || 1);
    this.ink.width = Math.round(w * dpr);
    this.ink.height = Math.round(hh * dpr);
    if (this.scale === 1) { this.x = this.fit.x; this.y = this.fit.y; }
    this.clampPan();
    this.apply();
    this.redraw();
    this.el.dataset.ready = '1';
  }

  apply() {
    this.content.style.transform = `translate(${this.x}px, ${this.y}px) scale(${this.scale})`;
    this.el.classList.toggle('zoomed', this.scale > 1.001);
    this.onZoom(this.scale);
  }

  clampPan() {
    const W = this.el.clientWidth;
    const H = this.el.clientHeight;
    const w = this.fit.w * this.scale;
    const hh = this.fit.h * this.scale;
    this.x = w <= W ? (W - w) / 2 : clamp(this.x, W - w, 0);
    this.y = hh <= H ? (H - hh) / 2 : clamp(this.y, H - hh, 0);
  }

  zoomAt(px, py, factor) {
    const next = clamp(this.scale * factor, 1, MAX_SCALE);
    const k = next / this.scale;
    this.x = px - (px - this.x) * k;
    this.y = py - (py - this.y) * k;
    this.scale = next;
    this.clampPan();
    this.apply();
  }

  zoomBy(factor) { this.zoomAt(this.el.clientWidth / 2, this.el.clientHeight / 2, factor); }

  reset() { this.scale = 1; this.clampPan(); this.apply(); }

  local(e) {
    const r = this.el.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  toggleZoom(e) {
    const [px, py] = this.local(e);
    if (this.scale > 1.001) this.reset();
    else this.zoomAt(px, py, 2.5);
  }

  wheel(e) {
    e.preventDefault();
    const [px, py] = this.local(e);
    this.zoomAt(px, py, Math.exp(-e.deltaY * (e.ctrlKey ? 0.01 : 0.0015)));
  }

  down(e) {
    if (this.drawing) return;
    this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY, x0: e.clientX, y0: e.clientY, t0: performance.now() });
    if (this.pointers.size > 1) this.pinched = true; // a pinch's last finger never counts as a swipe
    this.el.setPointerCapture?.(e.pointerId);
  }

  move(e) {
    const p = this.pointers.get(e.pointerId);
    if (!p || this.drawing) return;
    if (this.pointers.size === 1) {
      if (this.scale > 1.001) {
        this.x += e.clientX - p.x;
        this.y += e.clientY - p.y;
        this.clampPan();
        this.apply();
      }
    } else if (this.pointers.size === 2) {
      const [a, b] = [...this.pointers.values()];
      const before = Math.hypot(a.x - b.x, a.y - b.y);
      const midBefore = [(a.x + b.x) / 2, (a.y + b.y) / 2];
      p.x = e.clientX;
      p.y = e.clientY;
      const after = Math.hypot(a.x - b.x, a.y - b.y);
      const mid = [(a.x + b.x) / 2, (a.y + b.y) / 2];
      const r = this.el.getBoundingClientRect();
      this.x += mid[0] - midBefore[0];
      this.y += mid[1] - midBefore[1];
      if (before > 0) this.zoomAt(mid[0] - r.left, mid[1] - r.top, after / before);
      return;
    }
    p.x = e.clientX;
    p.y = e.clientY;
  }

  up(e) {
    const p = this.pointers.get(e.pointerId);
    if (!p) return;
    this.pointers.delete(e.pointerId);
    const pinched = this.pinched;
    if (!this.pointers.size) this.pinched = false;
    const dx = e.clientX - p.x0;
    const dy = e.clientY - p.y0;
    const quick = performance.now() - p.t0;
    if (this.onSwipe && !pinched && !this.pointers.size && e.type !== 'pointercancel' && this.scale <= 1.001
      && Math.abs(dx) >= SWIPE_PX && Math.abs(dx) > 2 * Math.abs(dy) && quick < SWIPE_MS) {
      this.onSwipe(dx < 0 ? 1 : -1);
      return;
    }
    const still = Math.hypot(dx, dy) < 8 && quick < 400;
    if (!still || this.pointers.size || e.type === 'pointercancel') return;
    const now = performance.now();
    if (now - this.lastTap < TAP_MS) {
      clearTimeout(this.tapTimer);
      this.lastTap = 0;
      this.toggleZoom(e);
      return;
    }
    this.lastTap = now;
    clearTimeout(this.tapTimer);
    this.tapTimer = setTimeout(() => this.onTap(), TAP_MS);
  }

  setDrawing(on) {
    this.drawing = on;
    this.el.classList.toggle('drawing', on);
  }

  visible(layer) {
    if (layer.media_time_s === null || layer.media_time_s === undefined || this.time === null) return true;
    return Math.abs(layer.media_time_s - this.time) <= this.tolerance;
  }

  redraw() {
    const ctx = this.ink.getContext('2d');
    const { width, height } = this.ink;
    ctx.clearRect(0, 0, width, height);
    if (this.showLayers) {
      for (const layer of this.layers) {
        if (layer.id !== this.hiddenLayer && this.visible(layer)) renderShapes(ctx, layer.shapes, width, height);
      }
    }
    renderShapes(ctx, this.extraShapes(), width, height);
    this.el.dataset.layersShown = String(this.showLayers
      ? this.layers.filter((l) => l.id !== this.hiddenLayer && this.visible(l)).length : 0);
  }
}
