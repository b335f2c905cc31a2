// Video playback for one or several videos at once: one play, one seek, one speed and one frame step
// drive them all (compare plays before/after clips in step). Keyboard: Space, ←/→, ',' and '.'.

import { clamp, h } from './dom.js';
import { icon } from './icons.js';
import { fmtClock, t } from './i18n.js';

export const SPEEDS = [0.25, 0.5, 0.75, 1, 1.25, 1.5, 2];
const EPSILON = 1e-4; // land just inside a frame, never on its edge
const DRIFT = 0.08; // seconds a follower may lag before it is pulled back in step

export class SyncGroup extends EventTarget {
  constructor(videos, fps = 30) {
    super();
    this.videos = videos;
    this.fps = fps > 1 ? fps : 30;
    this.playing = false;
    this.rate = 1;
    this.playStarted = 0;
    this.syncTimer = 0;
    const emit = () => this.dispatchEvent(new Event('time'));
    for (const v of videos) {
      for (const type of ['timeupdate', 'seeked', 'loadedmetadata', 'durationchange']) v.addEventListener(type, emit);
      v.addEventListener('ended', () => {
        if (this.playing && this.videos.every((x) => x.ended || x.paused)) this.pause();
      });
      v.addEventListener('pause', () => {
        if (this.playing && v === this.master && !v.ended) this.pause();
      });
    }
  }

  /** The longest video keeps the time; the others follow it. */
  get master() {
    return this.videos.reduce((a, b) => ((b.duration || 0) > (a.duration || 0) ? b : a), this.videos[0]);
  }

  get duration() { return Math.max(0, ...this.videos.map((v) => (Number.isFinite(v.duration) ? v.duration : 0))); }

  get time() { return this.master.currentTime; }

  get frame() { return Math.floor(this.time * this.fps + 0.01); }

  async play() {
    if (this.time >= this.duration - 0.02) this.seek(0);
    this.playing = true;
    this.playStarted = performance.now();
    performance.mark('cs:play');
    const master = this.master;
    if (master.requestVideoFrameCallback) {
      master.requestVideoFrameCallback(() => this.firstFrame());
    } else {
      master.addEventListener('playing', () => this.firstFrame(), { once: true });
    }
    const t0 = this.time;
    await Promise.all(this.videos.map((v) => (t0 < (v.duration || Infinity) - 0.02 ? v.play().catch(() => {}) : null)));
    this.dispatchEvent(new Event('state'));
    clearInterval(this.syncTimer);
    if (this.videos.length > 1) this.syncTimer = setInterval(() => this.keepInStep(), 250);
  }

  firstFrame() {
    if (!this.playStarted) return;
    const ms = performance.now() - this.playStarted;
    this.playStarted = 0;
    performance.mark('cs:first-frame');
    performance.measure('cs:play-to-first-frame', 'cs:play', 'cs:first-frame');
    this.dispatchEvent(new CustomEvent('firstframe', { detail: ms }));
  }

  pause() {
    this.playing = false;
    clearInterval(this.syncTimer);
    for (const v of this.videos) v.pause();
    this.align();
    this.dispatchEvent(new Event('state'));
  }

  toggle() { return this.playing ? this.pause() : this.play(); }

  seek(seconds) {
    const target = clamp(seconds, 0, this.duration || seconds);
    for (const v of this.videos) v.currentTime = Math.min(target, Number.isFinite(v.duration) ? v.duration : target);
    this.dispatchEvent(new Event('time'));
  }

  seekBy(delta) { this.seek(this.time + delta); }

  /** One frame back (-1) or forward (+1): pauses, then lands on the frame's start. */
  step(direction) {
    if (this.playing) this.pause();
    const frame = Math.max(0, this.frame + direction);
    this.seek(frame / this.fps + EPSILON);
  }

  setRate(rate) {
    this.rate = rate;
    for (const v of this.videos) { v.playbackRate = rate; v.defaultPlaybackRate = rate; }
    this.dispatchEvent(new Event('state'));
  }

  align() {
    const master = this.master;
    for (const v of this.videos) {
      if (v === master || !Number.isFinite(v.duration)) continue;
      const target = Math.min(master.currentTime, v.duration);
      if (Math.abs(v.currentTime - target) > 0.5 / this.fps) v.currentTime = target;
    }
  }

  keepInStep() {
    const master = this.master;
    for (const v of this.videos) {
      if (v === master || !Number.isFinite(v.duration) || master.currentTime >= v.duration) continue;
      if (Math.abs(v.currentTime - master.currentTime) > DRIFT) v.currentTime = master.currentTime;
      if (v.paused && this.playing) v.play().catch(() => {});
    }
  }
}

function speedLabel(rate) { return `${rate}×`; }

/** The control bar for a SyncGroup. `extra` are more buttons (save frame, fullscreen …). */
export function controls(group, { extra = [], markers = () => [] } = {}) {
  const play = h('button', { class: 'btn icon-btn play', type: 'button', 'aria-label': t('player.play'),
    title: t('player.playKey'), onclick: () => group.toggle() }, icon('play'));
  const back = h('button', { class: 'btn icon-btn', type: 'button', 'aria-label': t('player.frameBack'),
    title: t('player.frameBackKey'), onclick: () => group.step(-1) }, icon('frameBack'));
  const fwd = h('button', { class: 'btn icon-btn', type: 'button', 'aria-label': t('player.frameFwd'),
    title: t('player.frameFwdKey'), onclick: () => group.step(1) }, icon('frameFwd'));
  const seek = h('input', { class: 'seek', type: 'range', min: 0, max: 1, step: 'any', value: 0,
    'aria-label': t('player.position') });
  const marks = h('div', { class: 'seek-marks', 'aria-hidden': 'true' });
  const clock = h('span', { class: 'clock', 'aria-hidden': 'true' }, '0:00.00');
  const speed = h('select', { class: 'speed', 'aria-label': t('player.speed') },
    SPEEDS.map((r) => h('option', { value: r, selected: r === 1 }, speedLabel(r))));
  let scrubbing = false;
  seek.addEventListener('pointerdown', () => { scrubbing = true; });
  seek.addEventListener('pointerup', () => { scrubbing = false; });
  seek.addEventListener('input', () => group.seek(Number(seek.value)));
  seek.addEventListener('keydown', (e) => {
    // The slider's own arrow keys would move by a fraction of the length; ours seek by seconds.
    if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') e.preventDefault();
  });
  speed.addEventListener('change', () => group.setRate(Number(speed.value)));
  const paintMarks = () => {
    const d = group.duration;
    marks.replaceChildren(...(d ? markers().map((time) => h('span', { class: 'seek-mark',
      style: { left: `${(time / d) * 100}%` } })) : []));
  };
  const update = () => {
    const d = group.duration;
    if (Number(seek.max) !== d && d) { seek.max = String(d); paintMarks(); }
    if (!scrubbing) seek.value = String(group.time);
    const now = `${fmtClock(group.time)} / ${fmtClock(d)}`;
    clock.textContent = now;
    seek.setAttribute('aria-valuetext', now);
    seek.dataset.frame = String(group.frame);
  };
  const state = () => {
    play.replaceChildren(icon(group.playing ? 'pause' : 'play'));
    play.setAttribute('aria-label', group.playing ? t('player.pause') : t('player.play'));
    play.setAttribute('aria-pressed', String(group.playing));
    speed.value = String(group.rate);
  };
  group.addEventListener('time', update);
  group.addEventListener('state', state);
  const bar = h('div', { class: 'player-controls', role: 'group', 'aria-label': t('player.controls') },
    h('div', { class: 'seek-row' }, h('div', { class: 'seek-wrap' }, seek, marks), clock),
    h('div', { class: 'buttons-row' }, back, play, fwd, h('label', { class: 'speed-wrap' },
      icon('speed', { size: 20 }), speed), h('span', { class: 'spacer' }), ...extra));
  bar.refreshMarks = paintMarks;
  update();
  return bar;
}

const TYPING = new Set(['INPUT', 'TEXTAREA', 'SELECT']);

/** Player keys, for a dialog that holds a SyncGroup. Returns true when the key was used. */
export function playerKey(event, group) {
  const target = event.target;
  const typing = TYPING.has(target.tagName) && !(target.tagName === 'INPUT' && target.type === 'range');
  if (typing || event.altKey || event.ctrlKey || event.metaKey) return false;
  switch (event.key) {
    case ' ': case 'k': group.toggle(); return true;
    case 'ArrowLeft': group.seekBy(event.shiftKey ? -1 : -5); return true;
    case 'ArrowRight': group.seekBy(event.shiftKey ? 1 : 5); return true;
    case ',': group.step(-1); return true;
    case '.': group.step(1); return true;
    case 'Home': group.seek(0); return true;
    case 'End': group.seek(group.duration); return true;
    default: return false;
  }
}
