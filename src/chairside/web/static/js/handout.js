// The printable handout (templates/handout.html): print once the picture is in (the page has no inline script).

const button = document.getElementById('handout-print');
const image = document.getElementById('handout-image');

function ready() {
  return image instanceof HTMLImageElement && image.complete;
}

button?.addEventListener('click', () => {
  if (ready()) {
    window.print();
  } else {
    image?.addEventListener('load', () => window.print(), { once: true });
  }
});
