// flightdeck's web UI: live updates, keyboard navigation and actions. Pages are rendered
// by the server and work without this; actions call the JSON API with the session's CSRF
// token. Nothing here builds HTML from strings: text goes in with textContent.
"use strict";

(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : null;

  function flash(message, hint) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = "";
    const p = document.createElement("p");
    p.textContent = message;
    box.appendChild(p);
    if (hint) {
      const h = document.createElement("p");
      h.className = "hint";
      h.textContent = "hint: " + hint;
      box.appendChild(h);
    }
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  }

  // Calls the API; resolves with the JSON answer, or rejects with its error.
  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let answer = null;
    try {
      answer = await response.json();
    } catch (_) {
      answer = null;
    }
    if (!response.ok) {
      const error = (answer && answer.error) || { message: response.status + " " + response.statusText };
      throw error;
    }
    return answer;
  }

  function failed(error) {
    flash(error.message || String(error), error.hint);
  }

  // --- actions ---------------------------------------------------------------------------
  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    try {
      if (action === "approve" || action === "deny") {
        await api("POST", `/api/v1/approvals/${encodeURIComponent(button.dataset.approval)}/${action}`, {});
        await refresh();
      } else if (action === "cancel" || action === "resume") {
        await api("POST", `/api/v1/missions/${encodeURIComponent(button.dataset.mission)}/${action}`, {});
        await refresh();
      } else if (action === "fork") {
        const forked = await api("POST", `/api/v1/missions/${encodeURIComponent(button.dataset.mission)}/fork`, {
          at: Number(button.dataset.seq),
        });
        window.location.assign(`/missions/${encodeURIComponent(forked.id)}`);
      }
    } catch (error) {
      failed(error);
    } finally {
      button.disabled = false;
    }
  });

  document.addEventListener("submit", async (e) => {
    const form = e.target;
    if (form.id === "start-mission") {
      e.preventDefault();
      const params = {};
      for (const line of form.params.value.split("\n")) {
        const trimmed = line.trim();
        if (!trimmed) continue;
        const at = trimmed.indexOf("=");
        if (at < 1) {
          flash(`parameter line \`${trimmed}\` is not key=value`);
          return;
        }
        params[trimmed.slice(0, at).trim()] = trimmed.slice(at + 1);
      }
      try {
        const started = await api("POST", "/api/v1/missions", {
          template: form.template.value.trim(),
          repo: form.repo.value,
          base: form.base.value.trim() || "HEAD",
          params,
        });
        window.location.assign(`/missions/${encodeURIComponent(started.id)}`);
      } catch (error) {
        failed(error);
      }
    } else if (form.id === "raise-budget") {
      e.preventDefault();
      const add = {};
      add[form.dimension.value] = Number(form.amount.value);
      try {
        await api("POST", `/api/v1/missions/${encodeURIComponent(form.dataset.mission)}/budget`, { add });
        await refresh();
      } catch (error) {
        failed(error);
      }
    }
  });

  // --- live updates ----------------------------------------------------------------------
  // The page is fetched again and its main part swapped in. What the reader opened or
  // closed stays so; the rest is as the server renders it (a call that failed opens).
  const chosen = new Map();
  document.addEventListener("click", (e) => {
    const summary = e.target.closest("details[id] > summary");
    if (summary) chosen.set(summary.parentElement.id, !summary.parentElement.open);
  });
  let refreshing = null;
  async function refresh() {
    const main = document.getElementById("main");
    if (!main) return;
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("main");
    if (!fresh) return;
    for (const d of fresh.querySelectorAll("details[id]")) {
      if (chosen.has(d.id)) d.open = chosen.get(d.id);
    }
    main.replaceChildren(...fresh.childNodes);
    connect();
    verifyChain();
  }
  function scheduleRefresh() {
    if (refreshing) return;
    refreshing = setTimeout(async () => {
      try {
        await refresh();
      } finally {
        refreshing = null;
      }
    }, 300);
  }

  // --- the hash chain's badge ------------------------------------------------------------
  // Verified through the API (every event re-hashed); a live page re-checks at most every
  // ten seconds, and says how many events the check covered.
  let chainChecked = { url: null, at: 0, ok: null, text: "", title: "" };
  function showChain(el) {
    el.textContent = chainChecked.text;
    el.title = chainChecked.title;
    el.classList.toggle("chain-ok", chainChecked.ok === true);
    el.classList.toggle("chain-bad", chainChecked.ok === false);
  }
  async function verifyChain() {
    const el = document.getElementById("chain");
    if (!el || !el.dataset.verify) return;
    const url = el.dataset.verify;
    if (chainChecked.url === url && Date.now() - chainChecked.at < 10000) {
      showChain(el);
      return;
    }
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      const result = await response.json();
      if (!response.ok) throw result.error || { message: String(response.status) };
      chainChecked = result.ok
        ? { url, at: Date.now(), ok: true, text: `✓ chain verified (${result.checked} events)`, title: "every event's hash chains to the one before" }
        : { url, at: Date.now(), ok: false, text: `✗ chain broken at seq ${result.first_bad_seq}`, title: result.reason || "" };
      const current = document.getElementById("chain");
      if (current) showChain(current);
    } catch (error) {
      el.textContent = "chain not checked: " + (error.message || error);
    }
  }

  let source = null;
  let sourceUrl = null;
  function connect() {
    const live = document.getElementById("live");
    const url = live ? live.dataset.stream || live.dataset.changes : null;
    if (url === sourceUrl) return;
    if (source) source.close();
    source = null;
    sourceUrl = url;
    if (!url) return;
    source = new EventSource(url, { withCredentials: true });
    source.onmessage = scheduleRefresh;
    for (const type of ["changed", "mission.finished", "approval.requested", "approval.decided", "tool.completed", "tool.requested", "model.responded", "change.published", "step.started", "step.finished", "budget.exceeded", "budget.raised", "breaker.tripped", "mission.resumed", "mission.interrupted", "policy.decided", "acceptance.checked"]) {
      source.addEventListener(type, scheduleRefresh);
    }
    source.onerror = () => {
      // The stream ends when the mission finishes: one last refresh shows the end.
      if (source && source.readyState === EventSource.CLOSED) scheduleRefresh();
    };
  }
  connect();
  verifyChain();

  // --- keyboard --------------------------------------------------------------------------
  function events() {
    return [...document.querySelectorAll(".timeline .ev")].filter((el) => el.offsetParent !== null);
  }
  let current = -1;
  function focusEvent(i) {
    const all = events();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, i));
    const el = all[current];
    for (const d of document.querySelectorAll(".ev.current")) d.classList.remove("current");
    el.classList.add("current");
    el.scrollIntoView({ block: "nearest" });
    history.replaceState(null, "", "#" + el.id);
  }
  const help = [
    ["j / k", "next / previous event"],
    ["o or Enter", "open or close a tool call"],
    ["g / G", "first / last event of the page"],
    ["a", "the approvals inbox"],
    ["m", "the missions"],
    ["?", "this help"],
  ];
  function toggleHelp() {
    let box = document.getElementById("keys-help");
    if (box) {
      box.remove();
      return;
    }
    box = document.createElement("div");
    box.id = "keys-help";
    box.setAttribute("role", "dialog");
    const h = document.createElement("h2");
    h.textContent = "Keyboard shortcuts";
    box.appendChild(h);
    const dl = document.createElement("dl");
    for (const [keys, what] of help) {
      const dt = document.createElement("dt");
      dt.textContent = keys;
      const dd = document.createElement("dd");
      dd.textContent = what;
      dl.append(dt, dd);
    }
    box.appendChild(dl);
    document.body.appendChild(box);
  }
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, textarea, select") || e.metaKey || e.ctrlKey || e.altKey) return;
    const all = events();
    if (e.key === "j") focusEvent(current + 1);
    else if (e.key === "k") focusEvent(current - 1);
    else if (e.key === "g") focusEvent(0);
    else if (e.key === "G") focusEvent(all.length - 1);
    else if ((e.key === "o" || e.key === "Enter") && all[current]) {
      const details = all[current].closest("details");
      if (details) {
        details.open = !details.open;
        if (details.id) chosen.set(details.id, details.open);
        e.preventDefault();
      }
    } else if (e.key === "a") window.location.assign("/approvals");
    else if (e.key === "m") window.location.assign("/");
    else if (e.key === "?") toggleHelp();
    else if (e.key === "Escape") document.getElementById("keys-help")?.remove();
  });

  // A deep link opens the tool call it points into.
  function openTarget() {
    if (!location.hash.startsWith("#seq-")) return;
    const el = document.getElementById(location.hash.slice(1));
    if (!el) return;
    for (let d = el.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
    el.classList.add("current");
    current = events().indexOf(el);
    el.scrollIntoView({ block: "center" });
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
