// Keeps each page's live region current: the server renders it from every status snapshot and
// sends it over Server-Sent Events. Without this script the page is whole, only not live.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const region of document.querySelectorAll("[data-live]")) {
    const source = new EventSource(region.dataset.live);
    source.addEventListener("snapshot", (event) => {
      region.innerHTML = event.data;
      region.dataset.updated = String(Date.now());
    });
    // The browser reconnects by itself; say so meanwhile rather than show figures as current.
    source.addEventListener("error", () => region.classList.add("disconnected"));
    source.addEventListener("open", () => region.classList.remove("disconnected"));
  }
});
