// Register a patient (from the search pane) or correct a patient's details (from their timeline): one sheet,
// POST /api/v1/patients or PATCH /api/v1/patients/{id}. The server holds the rules (chart number unique per
// clinic, search terms rewritten, audited): its problem+json detail is shown in the sheet as it comes.

import { api } from './api.js';
import { h, trapFocus } from './dom.js';
import { t } from './i18n.js';
import { messageFor } from './session.js';
import { toast } from './widgets.js';

const SEXES = ['unknown', 'male', 'female', 'other'];
const EDITABLE = ['chart_no', 'name', 'name_kana', 'birth_date', 'sex'];

/**
 * Open the sheet in `host`. Without `patient` it registers a new one in one of `clinics`; with it, it edits.
 * `onSaved(patient)` gets the stored patient.
 */
export function openPatientForm(host, { patient = null, clinics = [], onSaved }) {
  const editing = Boolean(patient);
  const field = (id, label, input) => [h('label', { for: id }, label), input];
  const text = (id, value, attrs = {}) => h('input', { id, type: 'text', value: value || '', required: true,
    autocomplete: 'off', ...attrs });
  const clinic = editing || clinics.length < 2 ? null : h('select', { id: 'pf-clinic', required: true },
    clinics.map((c) => h('option', { value: c.id }, c.name)));
  const chart = text('pf-chart', patient?.chart_no, { inputmode: 'numeric', maxlength: 40 });
  const name = text('pf-name', patient?.name, { maxlength: 200, placeholder: t('patientForm.namePlaceholder') });
  const kana = text('pf-kana', patient?.name_kana, { maxlength: 200, placeholder: t('patientForm.kanaPlaceholder') });
  const birth = h('input', { id: 'pf-birth', type: 'date', value: patient?.birth_date || '', max: '9999-12-31' });
  const sex = h('select', { id: 'pf-sex' }, SEXES.map((s) =>
    h('option', { value: s, selected: (patient?.sex || 'unknown') === s }, t(`patientForm.sex.${s}`))));
  const error = h('p', { class: 'form-error', id: 'pf-error', role: 'alert' });
  const submit = h('button', { class: 'btn primary', type: 'submit', id: 'pf-save' },
    editing ? t('common.save') : t('patientForm.register'));
  const dialog = h('form', { class: 'sheet patient-form', id: 'patient-form', role: 'dialog', 'aria-modal': 'true',
    'aria-labelledby': 'pf-title', novalidate: true },
  h('h2', { id: 'pf-title' }, editing ? t('patientForm.editTitle') : t('patientForm.newTitle')),
  clinic ? field('pf-clinic', t('patientForm.clinic'), clinic) : null,
  field('pf-chart', t('patientForm.chart'), chart),
  field('pf-name', t('patientForm.name'), name),
  field('pf-kana', t('patientForm.kana'), kana),
  h('div', { class: 'form-row' },
    h('div', {}, ...field('pf-birth', t('patientForm.birth'), birth)),
    h('div', {}, ...field('pf-sex', t('patientForm.sex'), sex))),
  editing ? h('p', { class: 'hint' }, t('patientForm.audited')) : null,
  error,
  h('div', { class: 'sheet-actions' },
    h('button', { class: 'btn', type: 'button', id: 'pf-cancel', onclick: () => close() }, t('common.cancel')), submit));
  const backdrop = h('div', { class: 'backdrop' }, dialog);
  const release = trapFocus(dialog);
  const close = () => { backdrop.remove(); release(); };
  dialog.addEventListener('keydown', (e) => { e.stopPropagation(); if (e.key === 'Escape') close(); });
  dialog.addEventListener('submit', async (e) => {
    e.preventDefault();
    const values = { chart_no: chart.value.trim(), name: name.value.trim(), name_kana: kana.value.trim(),
      birth_date: birth.value || null, sex: sex.value };
    const missing = [[chart, values.chart_no], [name, values.name], [kana, values.name_kana]].find(([, v]) => !v);
    if (missing) {
      error.textContent = t('patientForm.required');
      missing[0].focus();
      return;
    }
    let request;
    if (editing) {
      const changes = Object.fromEntries(EDITABLE.filter((k) => (values[k] || null) !== (patient[k] || null))
        .map((k) => [k, values[k]]));
      if (!Object.keys(changes).length) { close(); return; }
      request = api(`/api/v1/patients/${patient.id}`, { method: 'PATCH', json: changes });
    } else {
      const clinicId = clinic ? clinic.value : clinics[0]?.id;
      request = api('/api/v1/patients', { method: 'POST', json: { clinic_id: clinicId, ...values } });
    }
    submit.disabled = true;
    error.textContent = '';
    try {
      const saved = await request;
      close();
      toast(editing ? t('patientForm.saved') : t('patientForm.registered', { name: saved.name }));
      onSaved(saved);
    } catch (err) {
      submit.disabled = false;
      error.textContent = messageFor(err);
    }
  });
  host.append(backdrop);
  (clinic || chart).focus();
}
