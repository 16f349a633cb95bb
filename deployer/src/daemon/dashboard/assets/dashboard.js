// Berth dashboard: the live parts. Pages work without this script; with it, sections marked
// data-fragment follow the server's changes, and the log table follows the app's logs.
"use strict";

(function () {
  // Live sections: the server sends a section again when it changes.
  const main = document.querySelector("main[data-live]");
  if (main && window.EventSource) {
    const live = new EventSource(main.dataset.live);
    live.addEventListener("fragment", (e) => {
      const f = JSON.parse(e.data);
      const el = document.getElementById(f.id);
      if (!el) return;
      // Keep keyboard focus where it was when the focused element survives the update.
      const focused = document.activeElement && el.contains(document.activeElement)
        ? document.activeElement.getAttribute("href") : null;
      el.innerHTML = f.html;
      if (focused) {
        const again = el.querySelector(`[href="${CSS.escape(focused)}"]`);
        if (again) again.focus();
      }
    });
    live.addEventListener("signed-out", () => {
      live.close();
      window.location.href = "/login";
    });
  }

  // The log tail: rows appended as the collector stores events; EventSource resumes after
  // the last event id it saw, so a dropped connection loses nothing.
  const lines = document.getElementById("log-lines");
  if (lines && window.EventSource) {
    const state = document.getElementById("log-state");
    const tail = new EventSource(lines.dataset.stream);
    const MAX_ROWS = 2000;
    const cell = (text, pre) => {
      const td = document.createElement("td");
      if (pre) {
        const p = document.createElement("pre");
        p.textContent = text;
        td.appendChild(p);
      } else {
        td.textContent = text;
      }
      return td;
    };
    tail.addEventListener("log", (e) => {
      const ev = JSON.parse(e.data);
      if (lines.querySelector(`tr[data-seq="${ev.seq}"]`)) return;
      const tr = document.createElement("tr");
      tr.dataset.seq = String(ev.seq);
      tr.className = "lvl-" + (ev.level || "");
      let message = ev.message || "";
      if (ev.exception) message += "\n" + ev.exception;
      tr.append(cell(ev.received || ""), cell(ev.level || ""), cell(ev.logger || ""), cell(message, true));
      lines.appendChild(tr);
      while (lines.rows.length > MAX_ROWS) lines.deleteRow(0);
    });
    tail.onopen = () => { state.textContent = "Following the logs: new events appear below as they are stored."; };
    tail.onerror = () => { state.textContent = "Connection lost; reconnecting (no event is skipped)…"; };
  }
})();
