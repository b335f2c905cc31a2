// A share link's page (templates/share.html): the items are in the page already; this only adds touches.
// - A tap on a photo toggles its full height (zoom to read details); the browser's pinch zoom still works.
// - Only one video plays at a time.
// - A photo that fails to load (the link was withdrawn meanwhile) says so instead of a broken image.

const items = document.getElementById('shared-items');

if (items) {
  items.addEventListener('click', (event) => {
    const img = event.target instanceof HTMLImageElement ? event.target : null;
    if (img) img.closest('figure')?.classList.toggle('zoomed');
  });
  items.addEventListener('play', (event) => {
    for (const video of items.querySelectorAll('video')) {
      if (video !== event.target) video.pause();
    }
  }, true);
  items.addEventListener('error', (event) => {
    const el = event.target;
    if (!(el instanceof HTMLImageElement || el instanceof HTMLVideoElement)) return;
    const note = document.createElement('p');
    note.className = 'share-empty';
    note.textContent = 'この項目を表示できません。医院にお問い合わせください。 / This item cannot be shown. Please ask the clinic.';
    el.replaceWith(note);
  }, true);
  document.body.dataset.ready = '1';
}
