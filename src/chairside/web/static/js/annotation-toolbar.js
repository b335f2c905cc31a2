// The controls while annotating: the toolbar in place of the player's (tool, colour, width, undo,
// clear, cancel, save) and the small field where the text tool asks for its words.

import { COLORS, TOOLS, WIDTHS } from './annotate.js';
import { h } from './dom.js';
import { t } from './i18n.js';
import { icon } from './icons.js';
import { iconButton } from './widgets.js';

/** The toolbar for `sketch` (annotate.js): it sets the sketch's tool, colour and width. */
export function annotationToolbar(sketch, { onCancel, onSave }) {
  const pressed = (group, value) => group.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.value === value)));
  const tools = TOOLS.map((tool) => h('button', { class: 'btn icon-btn tool', type: 'button', dataset: { value: tool },
    'aria-label': t(`annotation.tool.${tool}`), title: t(`annotation.tool.${tool}`), 'aria-pressed': String(tool === sketch.tool),
    onclick: () => { sketch.tool = tool; pressed(tools, tool); } }, icon(tool)));
  const colors = COLORS.map((color) => h('button', { class: 'swatch', type: 'button', dataset: { value: color },
    style: { background: color }, 'aria-label': t(`annotation.color.${color.slice(1)}`), 'aria-pressed': String(color === sketch.color),
    onclick: () => { sketch.color = color; pressed(colors, color); } }));
  const widths = Object.entries(WIDTHS).map(([name, w]) => h('button', { class: `btn width ${name}`, type: 'button',
    dataset: { value: name }, 'aria-label': t(`annotation.width.${name}`), title: t(`annotation.width.${name}`),
    'aria-pressed': String(w === sketch.width),
    onclick: () => { sketch.width = w; pressed(widths, name); } }, h('span', { class: 'line' })));
  return h('div', { class: 'draw-tools', role: 'toolbar', 'aria-label': t('annotation.tools') },
    h('div', { class: 'tool-group' }, tools),
    h('div', { class: 'tool-group colors' }, colors),
    h('div', { class: 'tool-group' }, widths),
    h('div', { class: 'tool-group' },
      iconButton('undo', t('annotation.undo'), () => sketch.undo()),
      iconButton('trash', t('annotation.clear'), () => sketch.clear())),
    h('span', { class: 'spacer' }),
    h('button', { class: 'btn', type: 'button', onclick: () => onCancel() }, t('common.cancel')),
    h('button', { class: 'btn primary', type: 'button', id: 'draw-save', onclick: () => onSave() },
      t('annotation.save')));
}

/** Ask for an annotation's text in a small field where the user tapped. */
export function askText(host, x, y) {
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
