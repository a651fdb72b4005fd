// Framefarm's dashboard: live updates by long-poll, local times, and nothing else. The pages
// work without it (forms post, pages reload); no inline script anywhere (CSP: script-src 'self').
"use strict";

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function localTimes(root) {
  for (const t of root.querySelectorAll("time[data-ms]")) {
    const d = new Date(Number(t.dataset.ms));
    t.textContent = d.toLocaleString();
    t.dateTime = d.toISOString();
  }
}

// A preview that is gone (the job was assembled) hides instead of showing a broken image.
document.addEventListener("error", (e) => {
  if (e.target instanceof HTMLImageElement) e.target.closest("figure")?.classList.add("gone");
}, true);

// The server's fragment replaces the live part of the page; open log details stay open and a
// field being typed in is not swept away (the swap waits until it loses focus).
async function swap(el, html) {
  while (el.contains(document.activeElement) && document.activeElement.matches("input, select, textarea")) {
    await new Promise((done) => document.activeElement.addEventListener("blur", done, { once: true }));
  }
  const open = [...el.querySelectorAll("details")].map((d) => d.open);
  el.innerHTML = html;
  el.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
  localTimes(el);
}

// Ask for the next change; the server answers as soon as there is one (200 with the fragment),
// or after its wait with nothing (204). Errors back off; a lost session goes to the sign-in.
async function follow(el) {
  const isList = el.tagName === "TBODY";
  let backoff = 1000;
  for (;;) {
    const mark = isList ? "fp=" + encodeURIComponent(el.dataset.fp) : "rev=" + encodeURIComponent(el.dataset.rev);
    const url = el.dataset.live + (el.dataset.live.includes("?") ? "&" : "?") + mark;
    try {
      const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (resp.status === 200) {
        await swap(el, await resp.text());
        const marked = el.querySelector(isList ? "[data-fp]" : "[data-rev]");
        if (marked) el.dataset[isList ? "fp" : "rev"] = marked.dataset[isList ? "fp" : "rev"];
        backoff = 1000;
      } else if (resp.status === 401) {
        window.location.assign("/signin");
        return;
      } else if (resp.status !== 204) {
        const after = Number(resp.headers.get("Retry-After")) * 1000;
        await sleep(after || backoff);
        backoff = Math.min(backoff * 2, 30000);
      }
    } catch (err) {
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 30000);
    }
    if (isList) await sleep(1000); // a busy farm changes often: a list refreshes at most once a second
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  const live = document.getElementById("live");
  if (live) follow(live);
});
