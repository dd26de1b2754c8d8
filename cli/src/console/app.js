// The replicator console: a page per hash route, each refreshed every second from the JSON
// API (no reload). Actions (replay) send the operator token and the page's CSRF token.
"use strict";

const view = document.getElementById("view");
const flash = document.getElementById("flash");
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("replicator-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("replicator-token", tokenInput.value));

let open = new Set(); // task IDs whose details are shown
let timer = null;

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function bytes(n) {
  if (!n) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
function when(t) { return t ? new Date(t).toLocaleString() : ""; }
function status(s) { return `<span class="status ${esc(s)}" data-status="${esc(s)}">${esc(s)}</span>`; }
function say(msg, ok) { flash.textContent = msg; flash.className = ok ? "ok" : "error"; }

async function get(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

async function act(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-CSRF-Token": csrf,
      Authorization: `Bearer ${tokenInput.value}`,
    },
    body: JSON.stringify(body || {}),
  });
  const text = await r.text();
  let msg = text;
  try { msg = JSON.parse(text).message || text; } catch (_) { /* plain text */ }
  say(msg, r.ok);
  return r.ok;
}

async function runs() {
  const d = await get("/api/runs");
  view.innerHTML = `<h1>Runs</h1>
  <table id="runs"><thead><tr><th>Run</th><th>Status</th><th>Operation</th><th>Tasks</th><th>Succeeded</th><th>Failed</th><th>Mismatched</th><th>Started</th><th>Completed</th></tr></thead><tbody>
  ${d.runs.map((r) => `<tr><td><a href="#/run/${esc(r.run_id)}">${esc(r.run_id)}</a></td><td>${status(r.status)}</td><td>${esc(r.operation)}</td>
    <td>${r.total}</td><td>${r.succeeded}</td><td>${r.failed}</td><td>${r.mismatched}</td><td>${when(r.created_at)}</td><td>${when(r.completed_at)}</td></tr>`).join("")}
  </tbody></table>`;
}

function taskDetail(t, attempts, results) {
  const lines = [];
  if (t.error) lines.push(`<div class="reason">Reason: ${esc(t.error)}</div>`);
  if (t.detail) lines.push(`<div>${esc(t.detail)}</div>`);
  for (const r of results) {
    if (r.keys) {
      const k = r.keys;
      lines.push(`<div>Keys by [${esc(k.primary_key.join(", "))}]: ${k.missing} missing, ${k.extra} extra, ${k.changed} changed` +
        `${k.missing_sample.length ? `\n  missing: ${esc(k.missing_sample.join("; "))}` : ""}` +
        `${k.extra_sample.length ? `\n  extra: ${esc(k.extra_sample.join("; "))}` : ""}` +
        `${k.changed_sample.length ? `\n  changed: ${esc(k.changed_sample.join("; "))}` : ""}</div>`);
    }
    for (const c of r.checks || []) lines.push(`<div>${c.passed ? "ok  " : "FAIL"} ${esc(c.name)}: ${esc(c.detail)}</div>`);
    for (const s of r.statements || []) lines.push(`<div class="muted">${esc(s)}</div>`);
    if (r.clone_path) {
      const p = r.clone_path;
      const how = p.mode === "storage"
        ? `the worker, with storage credentials Unity Catalog vended (${p.credential_requests} asked for)`
        : "the target warehouse (DEEP CLONE)";
      lines.push(`<div>Files copied by ${how}${p.fallback ? `; storage mode fell back: ${esc(p.fallback)}` : ""}</div>`);
    }
    for (const s of r.statement_ids || []) lines.push(`<div class="muted">statement ${esc(s)}</div>`);
  }
  lines.push("<div>Attempts:</div>");
  for (const a of attempts) {
    lines.push(`<div class="muted">  ${esc(a.stage)} by ${esc(a.worker || "?")} at ${when(a.started_at)}: ${esc(a.outcome || "running")}</div>`);
  }
  return `<tr class="detail-row" data-detail="${esc(t.task_id)}"><td colspan="8"><div class="detail">${lines.join("")}</div></td></tr>`;
}

async function run(id) {
  const d = await get(`/api/runs/${encodeURIComponent(id)}`);
  const rows = d.tasks.map((t) => {
    const attempts = d.attempts.filter((a) => a.task_id === t.task_id);
    const results = d.results.filter((r) => r.task_id === t.task_id);
    const row = `<tr class="task" data-task="${esc(t.task_id)}" data-table="${esc(t.table)}"><td>${esc(t.kind || "table")}</td><td>${esc(t.table)}</td><td>${status(t.status)}</td>
      <td>${t.source_version ?? ""} → ${t.target_version ?? ""}</td><td>${t.copied_files ?? 0} (${bytes(t.copied_bytes)})</td>
      <td>${t.source_rows ?? ""} / ${t.target_rows ?? ""}</td><td class="reason">${esc(t.error || "")}</td>
      <td><a href="#/table/${encodeURIComponent(t.target)}">history</a></td></tr>`;
    return row + (open.has(t.task_id) ? taskDetail(t, attempts, results) : "");
  });
  view.innerHTML = `<h1>Run <span id="run-id">${esc(d.run.run_id)}</span> ${status(d.run.status)}</h1>
  <p class="muted">${esc(d.run.operation)} · ${esc(d.run.source_root)} → ${esc(d.run.target_root)} · started ${when(d.run.created_at)}</p>
  <p><button id="replay">Replay failed tasks</button></p>
  <table id="tasks"><thead><tr><th>Kind</th><th>Table</th><th>Status</th><th>Versions</th><th>Copied</th><th>Rows (source / target)</th><th>Error</th><th></th></tr></thead>
  <tbody>${rows.join("")}</tbody></table>`;
  for (const tr of view.querySelectorAll("tr.task")) {
    tr.addEventListener("click", (e) => {
      if (e.target.tagName === "A") return;
      const t = tr.dataset.task;
      if (open.has(t)) open.delete(t); else open.add(t);
      refresh();
    });
  }
  document.getElementById("replay").addEventListener("click", async () => {
    await act(`/api/runs/${encodeURIComponent(id)}/replay`, {});
    refresh();
  });
}

async function groups() {
  const d = await get("/api/groups");
  view.innerHTML = `<h1>Sync groups</h1>
  <table id="groups"><thead><tr><th>Group</th><th>Status</th><th>Last cut</th><th>Lag</th><th>RPO</th><th>Schedule</th><th>Message</th><th></th></tr></thead><tbody>
  ${d.groups.map((g) => `<tr data-group="${esc(g.name)}"><td>${esc(g.name)}</td><td>${status(g.status)}</td><td>${when(g.cut_at)}</td>
    <td class="${g.over_rpo ? "reason" : ""}">${g.lag_seconds == null ? "no cut yet" : `${g.lag_seconds} s`}</td><td>${esc(g.rpo)}</td><td>${esc(g.schedule)}</td><td>${esc(g.message || "")}</td>
    <td><button class="sync-now" data-group="${esc(g.name)}">Sync now</button> <button class="failover" data-group="${esc(g.name)}">Failover (dry run)</button></td></tr>`).join("")}
  </tbody></table>`;
  for (const b of view.querySelectorAll("button.sync-now")) {
    b.addEventListener("click", async () => { await act(`/api/groups/${encodeURIComponent(b.dataset.group)}/sync`, {}); refresh(); });
  }
  for (const b of view.querySelectorAll("button.failover")) {
    b.addEventListener("click", async () => { await act(`/api/groups/${encodeURIComponent(b.dataset.group)}/failover`, {}); });
  }
}

async function deadLetters() {
  const d = await get("/api/dead-letters");
  view.innerHTML = `<h1>Dead letters</h1>
  <table id="dead-letters"><thead><tr><th>Queue</th><th>Run</th><th>Table</th><th>Reason</th><th>Deliveries</th><th></th></tr></thead><tbody>
  ${d.dead_letters.map((l) => `<tr><td>${esc(l.queue)}</td><td><a href="#/run/${esc(l.run_id)}">${esc(l.run_id)}</a></td><td>${esc(l.table)}</td>
    <td class="reason">${esc(l.reason)}</td><td>${l.deliveries}</td>
    <td><button class="replay-one" data-run="${esc(l.run_id)}" data-task="${esc(l.task_id)}">Replay</button></td></tr>`).join("")}
  </tbody></table>`;
  for (const b of view.querySelectorAll("button.replay-one")) {
    b.addEventListener("click", async () => {
      await act(`/api/runs/${encodeURIComponent(b.dataset.run)}/replay`, { task_id: b.dataset.task });
      refresh();
    });
  }
}

async function history(target) {
  const d = await get(`/api/history?target=${encodeURIComponent(target)}`);
  view.innerHTML = `<h1>History of ${esc(target)}</h1>
  <table id="history"><thead><tr><th>Run</th><th>Status</th><th>Versions</th><th>Error</th><th>Updated</th></tr></thead><tbody>
  ${d.tasks.map((t) => `<tr><td><a href="#/run/${esc(t.run_id)}">${esc(t.run_id)}</a></td><td>${status(t.status)}</td>
    <td>${t.source_version ?? ""} → ${t.target_version ?? ""}</td><td class="reason">${esc(t.error || "")}</td><td>${when(t.updated_at)}</td></tr>`).join("")}
  </tbody></table>`;
}

async function refresh() {
  const h = location.hash.replace(/^#/, "") || "/";
  try {
    if (h.startsWith("/run/")) await run(decodeURIComponent(h.slice(5)));
    else if (h === "/groups") await groups();
    else if (h === "/dead-letters") await deadLetters();
    else if (h.startsWith("/table/")) await history(decodeURIComponent(h.slice(7)));
    else await runs();
    document.getElementById("live").textContent = `live · ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    say(String(e.message || e), false);
  }
}

window.addEventListener("hashchange", () => { open = new Set(); refresh(); });
refresh();
timer = setInterval(refresh, 1000);
