// Galley console: refresh the parts of a page marked data-live, and show the test page while
// the service runs. Pages work without it; it only keeps them current.
"use strict";

async function refresh(element) {
  try {
    const response = await fetch(element.dataset.live, { cache: "no-store" });
    if (response.ok) {
      element.innerHTML = await response.text();
      showTestPage();
    }
  } catch (error) {
    // The console went away for a moment: try again on the next tick.
  }
  const live = element.querySelector(".live");
  if (!live || live.dataset.final !== "true") {
    setTimeout(() => refresh(element), Number(element.dataset.every || 2000));
  }
}

function showTestPage() {
  const frame = document.getElementById("test-page");
  const live = document.querySelector("#service-live .live");
  if (!frame || !live) {
    return;
  }
  const running = live.dataset.phase === "Running";
  document.getElementById("test-hint").hidden = running;
  if (running && !frame.getAttribute("src")) {
    frame.src = frame.dataset.src;
  } else if (!running && frame.getAttribute("src")) {
    frame.removeAttribute("src");
  }
  frame.hidden = !running;
}

document.addEventListener("DOMContentLoaded", () => {
  showTestPage();
  for (const element of document.querySelectorAll("[data-live]")) {
    const live = element.querySelector(".live");
    if (!live || live.dataset.final !== "true") {
      setTimeout(() => refresh(element), Number(element.dataset.every || 2000));
    }
  }
});
