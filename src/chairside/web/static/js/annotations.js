// An item's annotations as the server stores them (/api/v1/media/{id}/annotations, apart from the
// original): load, store, delete; and whether they are shown, a choice kept in this browser.

import { api } from './api.js';

const SHOW_KEY = 'chairside.showDrawings'; // a saved preference: the key keeps its first name

export const annotationsShown = () => localStorage.getItem(SHOW_KEY) !== '0';

export function setAnnotationsShown(shown) {
  localStorage.setItem(SHOW_KEY, shown ? '1' : '0');
}

/** Put the item's annotations on its stage (none if they cannot be read), redraw, and return them. */
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

/**
 * Store the shapes drawn on `item`: a new annotation at `time` (seconds into a video, null on a photo),
 * or a new version of `editing` (which names the version it replaces and keeps its time). An edited
 * annotation left empty is deleted; a new one left empty is not stored.
 */
export async function storeAnnotation({ item, editing, shapes, time }) {
  if (editing && !shapes.length) {
    await deleteAnnotation(editing);
  } else if (editing) {
    await api(`/api/v1/annotations/${editing.id}`, { method: 'PUT',
      json: { shapes, media_time_s: editing.media_time_s ?? time, version: editing.version } });
  } else if (shapes.length) {
    await api(`/api/v1/media/${item.id}/annotations`, { method: 'POST', json: { shapes, media_time_s: time } });
  }
}

export async function deleteAnnotation(annotation) {
  await api(`/api/v1/annotations/${annotation.id}`, { method: 'DELETE' });
}
