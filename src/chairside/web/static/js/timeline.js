// A patient's photos and videos as a timeline by date, with thumbnails (lazy-loaded), filters (kind,
// clinic, tag), and a selection for comparing and downloading.

import { api, url } from './api.js';
import { download, h, replace } from './dom.js';
import { dayKey, fmtBirth, fmtDay, fmtDuration, fmtTime, t } from './i18n.js';
import { icon } from './icons.js';
import { openMoveDialog } from './move-dialog.js';
import { patientNote } from './notes.js';
import { openPatientForm } from './patient-form.js';
import { openHandout, openShareDialog } from './share-dialog.js';
import { sexLabel } from './search.js';
import { onTeethSaved, toothChips, toothFilter, useNotation } from './tooth-chart.js';
import { confirmTrash, openTrashView } from './trash-view.js';
import { toast } from './widgets.js';

export const FIRST_PAGE = 60;
const NEXT_PAGE = 500;

export class PatientView {
  constructor({ patient, clinics, uploader, onOpen, onCompare, onPatientChanged = () => {} }) {
    this.patient = patient;
    this.clinics = clinics;
    this.uploader = uploader;
    this.onOpen = onOpen;
    this.onCompare = onCompare;
    this.onPatientChanged = onPatientChanged;
    this.items = [];
    this.tags = new Map();
    this.allTags = [];
    this.filter = { kind: '', clinic: '', tag: '', tooth: '' };
    // Tooth numbers shown as the patient's clinic chose (tooth-chart.js); teeth saved in the viewer repaint here.
    useNotation(clinics.find((c) => c.id === patient.clinic_id)?.tooth_notation);
    onTeethSaved(() => { if (this.el.isConnected) { this.paintToolbar(); this.render(); } });
    this.selecting = false;
    this.selected = new Set();
    this.loaded = false;
    this.painted = new Promise((resolve) => { this.firstPaint = resolve; });
    this.tagsReady = new Promise((resolve) => { this.tagsLoaded = resolve; }); // compare labels cells by tag
    this.firstThumbnail = new Promise((resolve) => { this.firstThumbnailDone = resolve; });
    this.timeline = h('div', { class: 'timeline', id: 'timeline', 'aria-busy': 'true' });
    this.count = h('span', { class: 'count', role: 'status' });
    this.selectionBar = h('div', { class: 'selection-bar', hidden: true, role: 'toolbar', 'aria-label': t('select.bar') });
    this.toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': t('filter.bar') });
    this.head = this.header();
    this.el = h('section', { class: 'patient-view', 'aria-labelledby': 'patient-name' },
      this.head, this.toolbar, this.selectionBar, this.timeline);
    uploader.acceptDrops(this.el);
    this.paintToolbar();
  }

  header() {
    const p = this.patient;
    const clinic = this.clinics.find((c) => c.id === p.clinic_id);
    return h('header', { class: 'patient-head' },
      h('div', { class: 'patient-title' },
        h('h1', { id: 'patient-name' }, h('span', { class: 'name' }, p.name), h('span', { class: 'kana' }, p.name_kana)),
        // Correct the patient's details (patient-form.js; audited by the server)
        h('button', { class: 'btn small', type: 'button', id: 'patient-edit', onclick: () => openPatientForm(document.body, {
          patient: this.patient, onSaved: (saved) => {
            this.patient = saved;
            const head = this.header();
            this.head.replaceWith(head);
            this.head = head;
            this.onPatientChanged(saved);
          } }) }, icon('pen', { size: 18 }), h('span', {}, t('patientForm.edit')))),
      h('p', { class: 'meta' }, [`${t('patient.chart')} ${p.chart_no}`, clinic?.name, fmtBirth(p.birth_date), sexLabel(p.sex)]
        .filter(Boolean).join(' · ')),
      this.note ||= patientNote(p)); // the patient's note (notes.js)
  }

  paintToolbar() {
    const kinds = [['', t('filter.all')], ['video', t('filter.videos')], ['image', t('filter.photos')]];
    const seg = h('div', { class: 'seg', role: 'group', 'aria-label': t('filter.kind') }, kinds.map(([value, label]) =>
      h('button', { type: 'button', class: 'seg-btn', 'aria-pressed': String(this.filter.kind === value),
        dataset: { kind: value || 'all' }, onclick: () => { this.filter.kind = value; this.paintToolbar(); this.render(); } },
      label)));
    const clinicIds = [...new Set(this.items.map((m) => m.clinic_id))];
    const clinicSelect = clinicIds.length > 1 || this.clinics.length > 1 ? h('select', { id: 'filter-clinic',
      'aria-label': t('filter.clinic'), onchange: (e) => { this.filter.clinic = e.target.value; this.render(); } },
    h('option', { value: '' }, t('filter.allClinics')),
    this.clinics.map((c) => h('option', { value: c.id, selected: this.filter.clinic === c.id }, c.name))) : null;
    const tagSelect = this.allTags.length ? h('select', { id: 'filter-tag', 'aria-label': t('filter.tag'),
      onchange: (e) => { this.filter.tag = e.target.value; this.render(); } },
    h('option', { value: '' }, t('filter.allTags')),
    this.allTags.map((tag) => h('option', { value: tag, selected: this.filter.tag === tag }, tag))) : null;
    const toothSelect = toothFilter(this.items, this.filter.tooth, (value) => { this.filter.tooth = value; this.render(); });
    replace(this.toolbar, seg, clinicSelect, tagSelect, toothSelect, this.count, h('span', { class: 'spacer' }),
      h('button', { class: 'btn', type: 'button', id: 'select-toggle', 'aria-pressed': String(this.selecting),
        onclick: () => this.setSelecting(!this.selecting) }, icon('select', { size: 20 }),
      h('span', {}, this.selecting ? t('select.done') : t('select.start'))),
      // The patient's trash (trash-view.js)
      h('button', { class: 'btn', type: 'button', id: 'trash-open', 'aria-label': t('trash.open'), title: t('trash.open'), onclick: () => openTrashView(document.body, {
        patient: this.patient, onRestored: (id) => this.addItem(id).catch(() => {}) }) },
      icon('trash', { size: 20 }), h('span', {}, t('trash.open'))),
      h('button', { class: 'btn primary', type: 'button', id: 'import-button', onclick: () => this.uploader.show() },
        icon('upload', { size: 20 }), h('span', {}, t('import.button'))));
  }

  setSelecting(on) {
    this.selecting = on;
    if (!on) this.selected.clear();
    this.paintToolbar();
    this.paintSelection();
    this.render();
  }

  paintSelection() {
    this.selectionBar.hidden = !this.selecting;
    const n = this.selected.size;
    const chosen = () => this.items.filter((m) => this.selected.has(m.id));
    replace(this.selectionBar,
      h('span', { class: 'sel-count', role: 'status' }, t('select.count', { n })),
      h('button', { class: 'btn', type: 'button', id: 'select-all', onclick: () => {
        for (const m of this.visible()) this.selected.add(m.id);
        this.paintSelection();
        this.render();
      } }, t('select.all')),
      h('button', { class: 'btn primary', type: 'button', id: 'compare-button', disabled: n < 2 || n > 4,
        title: t('select.compareHint'), 'aria-describedby': 'compare-hint', onclick: () => this.onCompare(chosen()) },
      icon('compare', { size: 20 }), h('span', {}, t('select.compare'))),
      // On screen, not only in a tooltip (there are none on a tablet): why Compare is not available yet.
      h('span', { class: 'sel-hint', id: 'compare-hint', hidden: n >= 2 && n <= 4 }, t('select.compareHint')),
      h('button', { class: 'btn', type: 'button', id: 'download-button', disabled: n < 1, onclick: () => {
        download(url.zip(chosen().map((m) => m.id)));
        toast(t('select.downloading', { n }));
      } }, icon('download', { size: 20 }), h('span', {}, t('select.download'))),
      // Share with the patient and the printed handout (share-dialog.js)
      h('button', { class: 'btn', type: 'button', id: 'share-button', disabled: n < 1,
        'aria-label': t('share.button'), onclick: () => openShareDialog(document.body, chosen()) },
      icon('share', { size: 20 }), h('span', {}, t('share.button'))),
      h('button', { class: 'btn', type: 'button', id: 'handout-button', disabled: n < 1 || n > 4,
        title: t('handout.hint'), 'aria-label': t('handout.button'), onclick: () => openHandout(chosen()) },
      icon('print', { size: 20 }), h('span', {}, t('handout.button'))),
      // Mistakes: move to another patient (move-dialog.js), to the trash (trash-view.js)
      h('button', { class: 'btn', type: 'button', id: 'move-button', disabled: n < 1, 'aria-label': t('move.button'),
        title: t('move.button'),
        onclick: () => openMoveDialog(document.body, { patient: this.patient, items: chosen(),
          onMoved: (ids) => this.removeItems(ids) }) }, icon('next', { size: 20 }), h('span', {}, t('move.button'))),
      h('button', { class: 'btn', type: 'button', id: 'delete-button', disabled: n < 1, 'aria-label': t('trash.button'),
        title: t('trash.button'),
        onclick: () => confirmTrash(document.body, { items: chosen(), onTrashed: (ids) => this.removeItems(ids) }) },
      icon('trash', { size: 20 }), h('span', {}, t('trash.button'))));
  }

  /** Items that left this timeline (moved to another patient, or to the trash). */
  removeItems(ids) {
    const gone = new Set(ids);
    this.items = this.items.filter((m) => !gone.has(m.id));
    for (const id of ids) { this.selected.delete(id); this.tags.delete(id); }
    this.paintToolbar();
    this.paintSelection();
    this.render();
  }

  /** `early`: the first page and the tags, when already asked for (a deep link). */
  async load(early = null) {
    const id = this.patient.id;
    performance.clearMarks('cs:timeline-dom');
    performance.clearMarks('cs:first-thumbnail');
    performance.clearMarks('cs:timeline-complete');
    const tags = (early?.tags || api(`/api/v1/patients/${id}/tags`)).catch(() => ({ items: [], tags: [] }));
    let tagList = null; // the tags, when they came before the first page: then the tiles are made once, not twice
    tags.then((list) => { tagList = list; });
    let page = await (early?.firstPage || api(`/api/v1/patients/${id}/media?limit=${FIRST_PAGE}`));
    this.items = page.items;
    const tagsFirst = tagList !== null;
    if (tagsFirst) this.applyTags(tagList); else this.render();
    performance.mark('cs:timeline-dom');
    this.timeline.dataset.painted = '1';
    this.firstPaint();
    if (!tagsFirst) this.applyTags(await tags);
    // The rest of a long timeline once the first thumbnail is in (at most 1 s): it does not compete with it.
    if (page.next_cursor) await Promise.race([this.firstThumbnail, new Promise((resolve) => { setTimeout(resolve, 1000); })]);
    while (page.next_cursor) {
      page = await api(`/api/v1/patients/${id}/media?limit=${NEXT_PAGE}&cursor=${encodeURIComponent(page.next_cursor)}`);
      this.items.push(...page.items);
      this.render();
    }
    this.loaded = true;
    performance.mark('cs:timeline-complete');
    this.timeline.setAttribute('aria-busy', 'false');
    this.timeline.dataset.loaded = '1';
    this.paintToolbar();
  }

  applyTags(list) {
    this.tags = new Map(list.items.map((x) => [x.media_id, x.tags]));
    this.allTags = list.tags;
    this.paintToolbar();
    this.render();
    this.tagsLoaded();
  }

  setTags(mediaId, tags) {
    if (tags.length) this.tags.set(mediaId, tags); else this.tags.delete(mediaId);
    this.allTags = [...new Set([...this.tags.values()].flat())].sort();
    this.paintToolbar();
    this.render();
  }

  async addItem(mediaId) {
    if (this.items.some((m) => m.id === mediaId)) return;
    const item = await api(`/api/v1/media/${mediaId}`);
    this.items.push(item);
    this.items.sort((a, b) => (a.captured_at < b.captured_at ? 1 : a.captured_at > b.captured_at ? -1 : 0));
    this.paintToolbar();
    this.render();
  }

  visible() {
    const { kind, clinic, tag, tooth } = this.filter;
    return this.items.filter((m) => (!kind || m.kind === kind) && (!clinic || m.clinic_id === clinic)
      && (!tag || (this.tags.get(m.id) || []).includes(tag)) && (!tooth || (m.teeth || []).includes(Number(tooth))));
  }

  render() {
    const items = this.visible();
    this.count.textContent = t('filter.count', { n: items.length });
    this.timeline.dataset.count = String(items.length);
    if (!items.length) {
      replace(this.timeline, h('p', { class: 'empty' }, this.items.length ? t('timeline.noMatch') : t('timeline.empty')));
      return;
    }
    const groups = new Map();
    for (const item of items) {
      const key = dayKey(item.captured_at);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(item);
    }
    let n = 0;
    replace(this.timeline, [...groups.entries()].map(([day, list]) => h('section', { class: 'day', 'aria-label': fmtDay(day) },
      h('h2', { class: 'day-title' }, fmtDay(day), h('small', {}, t('filter.count', { n: list.length }))),
      h('ul', { class: 'tiles' }, list.map((item) => this.tile(item, items, n++))))));
  }

  /** One thumbnail; the first few are fetched first (they are what the eye lands on). */
  tile(item, items, n) {
    const first = n === 0;
    const video = item.kind === 'video';
    const tags = this.tags.get(item.id) || [];
    const selected = this.selected.has(item.id);
    const label = [t(video ? 'kind.video' : 'kind.photo'), fmtTime(item.captured_at),
      video && item.duration_s ? fmtDuration(item.duration_s) : '', tags.join(' ')].filter(Boolean).join(' ');
    // The first few are asked for as the tile is made (eager), not a layout later as lazy images are.
    const img = h('img', { src: url.thumbnail(item.id), loading: n < 8 ? 'eager' : 'lazy', decoding: 'async', alt: '',
      width: 320, height: 240, fetchpriority: n < 8 ? 'high' : null });
    if (first) {
      img.addEventListener('load', () => {
        if (!performance.getEntriesByName('cs:first-thumbnail').length) performance.mark('cs:first-thumbnail');
        this.firstThumbnailDone();
      }, { once: true });
      img.addEventListener('error', () => this.firstThumbnailDone(), { once: true });
    }
    img.addEventListener('error', () => img.classList.add('broken'), { once: true });
    return h('li', { class: `tile${selected ? ' selected' : ''}`, dataset: { id: item.id, kind: item.kind } },
      h('button', { class: 'tile-btn', type: 'button', 'aria-label': label,
        'aria-pressed': this.selecting ? String(selected) : null,
        onclick: (e) => {
          if (this.selecting) {
            const on = !this.selected.has(item.id);
            if (on) this.selected.add(item.id); else this.selected.delete(item.id);
            e.currentTarget.setAttribute('aria-pressed', String(on));
            e.currentTarget.parentElement.classList.toggle('selected', on);
            this.paintSelection();
          } else {
            this.onOpen(items, items.indexOf(item));
          }
        } },
      img,
      video ? h('span', { class: 'badge-video' }, icon('play', { size: 12 }), item.duration_s ? fmtDuration(item.duration_s) : '') : null,
      h('span', { class: 'tile-time' }, fmtTime(item.captured_at)),
      tags.length ? h('span', { class: 'tile-tags' }, tags.join(' · ')) : null,
      toothChips(item.teeth),
      this.selecting ? h('span', { class: 'tile-check', 'aria-hidden': 'true' }, icon('check', { size: 18 })) : null));
  }
}
