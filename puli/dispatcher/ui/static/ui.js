// Puli's monitor: the live parts of a page, actions through the dispatcher's API, the log
// follower. Pages are whole without it; it only refreshes them and sends what buttons ask.
"use strict";
(function () {
  const FINAL = new Set([5, 6, 7, 8]);          // DONE, TIMEOUT, ERROR, CANCELED

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function flash(text, bad) {
    const box = document.getElementById("flash");
    box.textContent = text;
    box.className = bad ? "bad" : "good";
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => { box.hidden = true; }, bad ? 15000 : 6000);
  }

  async function why(resp) {
    try {
      const body = await resp.json();
      return body.description || body.title || `HTTP ${resp.status}`;
    } catch (_) {
      return `HTTP ${resp.status}`;
    }
  }

  async function api(method, url, body) {
    const resp = await fetch(url, {
      method, credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
      body: JSON.stringify(body),
    });
    if (!resp.ok) throw new Error(await why(resp));
    return resp.json();
  }

  function whole(value) {
    const n = Number(value);
    if (value === "" || !Number.isInteger(n)) throw new Error(`give a whole number, not ${JSON.stringify(value)}`);
    return n;
  }

  const path = encodeURIComponent;
  // action -> (target, value) -> [method, API route, body]: the same routes the tools call.
  const ACTIONS = {
    "pause": id => ["PUT", `/nodes/${id}/paused`, {paused: true}],
    "resume": id => ["PUT", `/nodes/${id}/paused`, {paused: false}],
    "cancel": id => ["PUT", `/nodes/${id}/cancel`, {}],
    "restart": id => ["PUT", `/nodes/${id}/status`, {status: 1}],
    "retry": id => ["PUT", `/nodes/${id}/status?cmdStatus=6&cmdStatus=7`, {status: 1}],
    "priority": (id, v) => ["PUT", `/nodes/${id}/priority`, {priority: whole(v)}],
    "maxrn": (id, v) => ["PUT", `/nodes/${id}/maxRN`, {maxRN: whole(v)}],
    "pool": (id, v) => ["PUT", `/nodes/${id}/pool`, {poolName: v}],
    "command-cancel": id => ["PUT", `/commands/${id}`, {status: 8}],
    "command-restart": id => ["PUT", `/commands/${id}`, {status: 1}],
    "rn-pause": name => ["PUT", `/rendernodes/${path(name)}/paused`, {paused: true}],
    "rn-pause-kill": name => ["PUT", `/rendernodes/${path(name)}/paused`, {paused: true, killproc: true}],
    "rn-resume": name => ["PUT", `/rendernodes/${path(name)}/paused`, {paused: false}],
    "rn-release": name => ["PUT", "/rendernodes/quarantine", {quarantine: false, rns: [name]}],
  };

  function targetsOf(button) {
    if (button.dataset.id) return [button.dataset.id];
    const bar = button.closest("[data-targets]");
    if (!bar) return [];
    return Array.from(document.querySelectorAll(`input[name="${bar.dataset.targets}"]:checked`), box => box.value);
  }

  async function act(button) {
    const name = button.dataset.action;
    const targets = targetsOf(button);
    if (!targets.length) {
      flash("select something first", true);
      return;
    }
    const value = button.dataset.value ? document.querySelector(button.dataset.value).value : undefined;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm.replace("{n}", targets.length))) return;
    let done = 0;
    const refused = [];
    button.disabled = true;
    try {
      for (const target of targets) {
        try {
          await api(...ACTIONS[name](target, value));
          done += 1;
        } catch (err) {
          refused.push(`${target}: ${err.message}`);
        }
      }
    } finally {
      button.disabled = false;
    }
    const label = button.textContent.trim().toLowerCase();
    if (refused.length) flash(`${label}: ${done} done, ${refused.length} refused — ${refused.join("; ")}`, true);
    else flash(`${label}: ${done} done`, false);
    refreshAll();
  }

  // -- live parts -------------------------------------------------------------------------------
  const live = [];

  async function refresh(part) {
    if (document.hidden || part.busy) return;
    part.busy = true;
    try {
      const resp = await fetch(location.href, {credentials: "same-origin", headers: {"X-Puli-Live": "1"}});
      if (resp.redirected || resp.status === 401) {
        location.reload();                          // the session ended: the sign-in form
        return;
      }
      if (!resp.ok) return;
      const html = await resp.text();
      if (html === part.html) return;
      const checked = new Set(Array.from(part.el.querySelectorAll("input[type=checkbox]:checked"),
                                         box => `${box.name}=${box.value}`));
      part.el.innerHTML = html;
      part.html = html;
      part.el.querySelectorAll("input[type=checkbox]").forEach(box => {
        if (checked.has(`${box.name}=${box.value}`)) box.checked = true;
      });
    } catch (_) {
      // the dispatcher is away for a moment: the next turn tries again
    } finally {
      part.busy = false;
    }
  }

  function refreshAll() {
    live.forEach(refresh);
  }

  // -- a command's log ----------------------------------------------------------------------------
  async function follow(pre) {
    const url = pre.dataset.log;
    const size = document.getElementById("log-size");
    const status = document.getElementById("log-status");
    const following = document.getElementById("log-follow");
    let offset = null;
    for (;;) {
      const query = offset === null ? `tail=${pre.dataset.tail}` : `offset=${offset}&follow=1`;
      let resp;
      try {
        resp = await fetch(`${url}?${query}`, {credentials: "same-origin"});
      } catch (_) {
        await pause(3000);
        continue;
      }
      if (!resp.ok) {
        flash(`the log cannot be read now: ${await why(resp)}`, true);
        await pause(5000);
        continue;
      }
      const text = await resp.text();
      const bytes = Number(resp.headers.get("X-Log-Size"));
      const code = Number(resp.headers.get("X-Command-Status"));
      const atEnd = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
      if (text) pre.append(text);
      if (Number.isFinite(bytes)) {
        offset = bytes;
        size.textContent = `${bytes} bytes`;
      }
      if (text && atEnd && following.checked) window.scrollTo(0, document.body.scrollHeight);
      status.textContent = ["BLOCKED", "READY", "ASSIGNED", "RUNNING", "FINISHING", "DONE", "TIMEOUT",
                            "ERROR", "CANCELED"][code] || status.textContent;
      status.className = `status s-${status.textContent.toLowerCase()}`;
      if (FINAL.has(code) && !text) return;         // ended, and everything read
      if (!following.checked) await new Promise(resolve => following.addEventListener("change", resolve, {once: true}));
      else if (!text) await pause(1000);
    }
  }

  function pause(ms) {
    return new Promise(resolve => setTimeout(resolve, ms));
  }

  document.addEventListener("click", event => {
    const button = event.target.closest("button[data-action]");
    if (button) {
      event.preventDefault();
      act(button);
    }
  });
  document.addEventListener("change", event => {
    const all = event.target.closest("input[data-select-all]");
    if (all) {
      document.querySelectorAll(`input[name="${all.dataset.selectAll}"]`).forEach(box => { box.checked = all.checked; });
    }
  });
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-live]").forEach(el => {
      const part = {el, html: null, busy: false};
      live.push(part);
      setInterval(() => refresh(part), Number(el.dataset.live) * 1000);
    });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshAll(); });
    const pre = document.getElementById("log");
    if (pre) follow(pre);
  });
})();
