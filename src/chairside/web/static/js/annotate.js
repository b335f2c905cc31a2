// Annotations over a picture: vector shapes in coordinates normalised to 0..1 of the picture, so the
// same annotation lands on the same spot on every screen. Rendering, and the editor (Sketch).

export const COLORS = ['#e53935', '#fdd835', '#43a047', '#1e88e5', '#ffffff', '#111111'];
export const WIDTHS = { thin: 0.004, thick: 0.009 };
export const TOOLS = ['pen', 'arrow', 'circle', 'text'];
const MIN_MOVE = 0.002;

function halo(color) {
  const n = parseInt(color.slice(1), 16);
  const lum = 0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255);
  return lum > 140 ? 'rgba(0,0,0,0.55)' : 'rgba(255,255,255,0.75)';
}

function pathOf(ctx, shape, w, h) {
  ctx.beginPath();
  if (shape.type === 'pen') {
    const [first, ...rest] = shape.points;
    ctx.moveTo(first[0] * w, first[1] * h);
    if (!rest.length) ctx.lineTo(first[0] * w + 0.01, first[1] * h);
    for (const [x, y] of rest) ctx.lineTo(x * w, y * h);
  } else if (shape.type === 'arrow') {
    const [x1, y1] = [shape.start[0] * w, shape.start[1] * h];
    const [x2, y2] = [shape.end[0] * w, shape.end[1] * h];
    const angle = Math.atan2(y2 - y1, x2 - x1);
    const head = Math.max(12, shape.width * w * 4.5);
    ctx.moveTo(x1, y1);
    ctx.lineTo(x2, y2);
    for (const side of [-1, 1]) {
      ctx.moveTo(x2, y2);
      ctx.lineTo(x2 - head * Math.cos(angle + side * 0.5), y2 - head * Math.sin(angle + side * 0.5));
    }
  } else if (shape.type === 'circle') {
    const cx = ((shape.start[0] + shape.end[0]) / 2) * w;
    const cy = ((shape.start[1] + shape.end[1]) / 2) * h;
    const rx = Math.max(1, (Math.abs(shape.end[0] - shape.start[0]) / 2) * w);
    const ry = Math.max(1, (Math.abs(shape.end[1] - shape.start[1]) / 2) * h);
    ctx.ellipse(cx, cy, rx, ry, 0, 0, Math.PI * 2);
  }
}

export function renderShapes(ctx, shapes, w, h) {
  ctx.save();
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  for (const shape of shapes) {
    const lw = Math.max(1.5, shape.width * w);
    if (shape.type === 'text') {
      const size = Math.max(10, shape.size * h);
      ctx.font = `bold ${size}px system-ui, "Hiragino Sans", "Noto Sans CJK JP", "Yu Gothic", sans-serif`;
      ctx.textBaseline = 'top';
      ctx.lineWidth = Math.max(2, size * 0.14);
      ctx.strokeStyle = halo(shape.color);
      const [x, y] = [shape.at[0] * w, shape.at[1] * h];
      ctx.strokeText(shape.text, x, y);
      ctx.fillStyle = shape.color;
      ctx.fillText(shape.text, x, y);
      continue;
    }
    pathOf(ctx, shape, w, h);
    ctx.strokeStyle = halo(shape.color);
    ctx.lineWidth = lw + Math.max(2, lw * 0.6);
    ctx.stroke();
    ctx.strokeStyle = shape.color;
    ctx.lineWidth = lw;
    ctx.stroke();
  }
  ctx.restore();
}

const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;

/** The annotation editor: pointer input on a canvas → shapes. Text asks for its words in an inline field. */
export class Sketch {
  constructor(canvas, { onChange, askText }) {
    this.canvas = canvas;
    this.onChange = onChange;
    this.askText = askText;
    this.tool = 'pen';
    this.color = COLORS[0];
    this.width = WIDTHS.thin;
    this.shapes = [];
    this.active = null;
    this.pointer = null;
    this.handlers = {
      pointerdown: (e) => this.down(e), pointermove: (e) => this.move(e),
      pointerup: (e) => this.up(e), pointercancel: (e) => this.up(e),
    };
    for (const [name, fn] of Object.entries(this.handlers)) canvas.addEventListener(name, fn);
  }

  destroy() {
    for (const [name, fn] of Object.entries(this.handlers)) this.canvas.removeEventListener(name, fn);
  }

  at(event) {
    const r = this.canvas.getBoundingClientRect();
    return [round((event.clientX - r.left) / r.width), round((event.clientY - r.top) / r.height)];
  }

  down(event) {
    if (this.pointer !== null || (event.pointerType === 'mouse' && event.button !== 0)) return;
    event.preventDefault();
    const p = this.at(event);
    if (this.tool === 'text') {
      const r = this.canvas.getBoundingClientRect();
      this.askText(event.clientX, event.clientY, r.height).then((text) => {
        if (!text) return;
        this.shapes.push({ type: 'text', color: this.color, width: this.width, at: p, text: text.slice(0, 500), size: 0.045 });
        this.onChange();
      });
      return;
    }
    this.pointer = event.pointerId;
    this.canvas.setPointerCapture(event.pointerId);
    const base = { type: this.tool, color: this.color, width: this.width };
    this.active = this.tool === 'pen' ? { ...base, points: [p] } : { ...base, start: p, end: p };
    this.onChange();
  }

  move(event) {
    if (event.pointerId !== this.pointer || !this.active) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of (events.length ? events : [event])) {
      const p = this.at(e);
      if (this.active.type === 'pen') {
        const last = this.active.points[this.active.points.length - 1];
        if (Math.hypot(p[0] - last[0], p[1] - last[1]) >= MIN_MOVE && this.active.points.length < 5000) this.active.points.push(p);
      } else {
        this.active.end = p;
      }
    }
    this.onChange();
  }

  up(event) {
    if (event.pointerId !== this.pointer) return;
    this.pointer = null;
    const shape = this.active;
    this.active = null;
    if (!shape) return;
    const tiny = shape.type !== 'pen'
      && Math.hypot(shape.end[0] - shape.start[0], shape.end[1] - shape.start[1]) < 0.01;
    if (!tiny) this.shapes.push(shape);
    this.onChange();
  }

  current() { return this.active ? [...this.shapes, this.active] : this.shapes; }

  undo() { this.shapes.pop(); this.onChange(); }

  clear() { this.shapes = []; this.onChange(); }
}
