// crabpot admin dashboard. Every action is a call of the admin API (`/api/v1/<resource>/<verb>`,
// the same handlers as `crabpot <resource> <verb>` on data/crabpot.sock): there is no second
// implementation here. Values come from the host's database and from containers, so they are
// shown with textContent only (strings are never parsed as HTML). Refreshes every few seconds.
"use strict";

const REFRESH_MS = 3000;
let csrf = null;

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

async function admin(resource, verb, body) {
  const path = resource === "status" ? "/api/v1/status" : `/api/v1/${resource}/${verb}`;
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf || "" },
    body: JSON.stringify(body || {}),
  });
  if (response.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function showError(error) {
  const box = $("#error");
  box.hidden = !error;
  box.textContent = error ? String(error.message || error) : "";
}

function when(ms) {
  if (ms === null || ms === undefined || ms === "") return "";
  const date = new Date(Number(ms));
  return isNaN(date) ? String(ms) : date.toISOString().replace("T", " ").slice(0, 19);
}

function ago(ms) {
  if (!ms) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Number(ms)) / 1000));
  return seconds < 120 ? `${seconds} s ago` : `${Math.round(seconds / 60)} min ago`;
}

function cell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// A table of rows: columns are [header, row -> value or node].
function table(rows, columns, empty) {
  if (!rows || rows.length === 0) return el("p", { class: "muted" }, empty || "None.");
  const head = el("tr", {}, ...columns.map(([name]) => el("th", {}, name)));
  const body = rows.map((row) => el("tr", {}, ...columns.map(([, get]) => {
    const value = get(row);
    return el("td", {}, value instanceof Node ? value : cell(value));
  })));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

// An input and a Save button that sends `update` with the field changed.
function edit(resource, id, field, value, placeholder) {
  const input = el("input", { value: value || "", placeholder: placeholder || field, "aria-label": field, size: "14" });
  const save = act("Save", "", () => admin(resource, "update", { id, [field]: input.value }));
  return el("span", { class: "edit" }, input, save);
}

// The tables are rebuilt on every refresh, unless someone is typing into one of them.
function editing(id) {
  const active = document.activeElement;
  return active && active.tagName === "INPUT" && active.closest(`#${id} .body`) !== null;
}

function fill(id, node) {
  if (editing(id)) return;
  $(`#${id} .body`).replaceChildren(node);
}

function list(data, key) {
  if (Array.isArray(data)) return data;
  return data && Array.isArray(data[key]) ? data[key] : [];
}

function act(label, className, work) {
  return el("button", {
    type: "button", class: className,
    onclick: async (event) => {
      event.target.disabled = true;
      try { await work(); showError(null); } catch (e) { showError(e); }
      refresh();
    },
  }, label);
}

async function refreshStatus() {
  const status = await admin("status");
  const channels = (status.channels || []).map((c) => {
    const state = (c.health && c.health.state) || "unknown";
    const tone = state === "connected" ? "ok" : state === "failing" ? "bad" : "warn";
    return el("div", { class: "card" }, c.channel_type, el("b", { class: tone }, state),
      c.health && c.health.last_error ? el("span", { class: "muted" }, c.health.last_error) : null);
  });
  fill("status", el("div", {},
    el("div", { class: "cards" },
      el("div", { class: "card" }, "containers running", el("b", {}, (status.running || []).length + " / " + status.max_containers)),
      el("div", { class: "card" }, "starting", el("b", {}, status.starting || 0)),
      el("div", { class: "card" }, "queued", el("b", {}, (status.queued || []).length)),
      el("div", { class: "card" }, "approvals waiting", el("b", { class: status.pending_approvals ? "warn" : "" }, status.pending_approvals || 0)),
      el("div", { class: "card" }, "Docker", el("span", {}, status.docker)),
      el("div", { class: "card" }, "model", el("span", {}, status.model))),
    el("h3", {}, "Channel adapters"),
    el("div", { class: "cards" }, ...channels)));
}

async function refreshApprovals() {
  const approvals = list(await admin("approvals", "list", {}), "approvals");
  fill("approvals", table(approvals, [
    ["id", (a) => a.id],
    ["kind", (a) => a.kind || a.action],
    ["what", (a) => a.summary || a.title || a.payload],
    ["asked", (a) => when(a.created_at)],
    ["expires", (a) => when(a.expires_at)],
    ["", (a) => el("span", {},
      act("Approve", "approve", () => admin("approvals", "approve", { id: a.id })),
      act("Deny", "deny", () => admin("approvals", "deny", { id: a.id })))],
  ], "Nothing waits for approval."));
}

async function refreshSessions() {
  const sessions = list(await admin("sessions", "list", {}), "sessions");
  fill("sessions", table(sessions, [
    ["session", (s) => s.session.id],
    ["group", (s) => s.session.agent_group_id],
    ["chat", (s) => s.session.messaging_group_id],
    ["status", (s) => s.session.failed_reason ? `failed: ${s.session.failed_reason}` : s.session.status],
    ["container", (s) => s.container],
    ["heartbeat", (s) => (s.heartbeat_age_ms === null || s.heartbeat_age_ms === undefined)
      ? "" : `${Math.round(s.heartbeat_age_ms / 1000)} s ago`],
    ["last activity", (s) => ago(s.session.last_active_at)],
    ["tokens in / out", (s) => `${s.usage.input_tokens} / ${s.usage.output_tokens}${s.usage.estimated_requests ? ` (${s.usage.estimated_requests} estimated)` : ""}`],
    ["", (s) => act("Reset", "", () => admin("sessions", "reset", { id: s.session.id }))],
  ], "No sessions yet."));
}

async function refreshGroups() {
  const groups = list(await admin("groups", "list", {}), "groups");
  fill("groups", table(groups, [
    ["id", (g) => g.id], ["name", (g) => edit("groups", g.id, "name", g.name)],
    ["created", (g) => when(g.created_at)],
    ["", (g) => act("Restart", "", () => admin("groups", "restart", { id: g.id }))],
  ]));
}

async function refreshChats() {
  const chats = list(await admin("chats", "list", {}), "chats");
  fill("chats", table(chats, [
    ["id", (c) => c.id], ["channel", (c) => c.channel_type], ["platform id", (c) => c.platform_id],
    ["name", (c) => edit("chats", c.id, "name", c.name)], ["group chat", (c) => c.is_group ? "yes" : "no"],
  ]));
}

async function refreshWirings() {
  const wirings = list(await admin("wirings", "list", {}), "wirings");
  fill("wirings", table(wirings, [
    ["id", (w) => w.id], ["chat", (w) => w.messaging_group_id || w.chat], ["group", (w) => w.agent_group_id],
    ["session mode", (w) => w.session_mode], ["engage", (w) => w.engage_mode],
    ["pattern", (w) => edit("wirings", w.id, "engage_pattern", w.engage_pattern, "pattern")],
    ["", (w) => act("Remove", "deny", () => admin("wirings", "delete", { id: w.id }))],
  ]));
}

async function refreshTasks() {
  const tasks = list(await admin("tasks", "list", {}), "tasks");
  fill("tasks", table(tasks, [
    ["task", (t) => t.task_id], ["group", (t) => t.agent_group_id], ["status", (t) => t.status],
    ["next run", (t) => t.next_run || when(t.next_run_at)], ["schedule", (t) => t.schedule],
    ["", (t) => el("span", {},
      act("Pause", "", () => admin("tasks", "pause", { id: t.task_id })),
      act("Resume", "", () => admin("tasks", "resume", { id: t.task_id })),
      act("Cancel", "deny", () => admin("tasks", "cancel", { id: t.task_id })))],
  ], "No scheduled tasks."));
}

async function refreshDropped() {
  const dropped = list(await admin("dropped", "list", { limit: 50 }), "dropped");
  fill("dropped", table(dropped, [
    ["when", (d) => when(d.created_at || d.dropped_at)], ["session", (d) => d.session_id],
    ["reason", (d) => d.reason], ["message", (d) => d.message_id || d.row_id],
  ], "Nothing was dropped."));
}

let running = false;
async function refresh() {
  if (running) return;
  running = true;
  try {
    await Promise.all([refreshStatus(), refreshApprovals(), refreshSessions(), refreshGroups(),
      refreshChats(), refreshWirings(), refreshTasks(), refreshDropped()]);
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
    showError(null);
  } catch (e) {
    showError(e);
  } finally {
    running = false;
  }
}

function form(id, work) {
  $(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(event.target));
    for (const key of Object.keys(values)) if (values[key] === "") delete values[key];
    try { await work(values); event.target.reset(); showError(null); } catch (e) { showError(e); }
    refresh();
  });
}

async function start() {
  const response = await fetch("/api/session", { credentials: "same-origin" });
  if (response.status === 401) { location.href = "/login"; return; }
  const session = await response.json();
  csrf = session.csrf_token;
  if (!session.admin) {
    showError("The dashboard is for owners and admins; you can use the chat.");
    return;
  }
  form("#group-create", (values) => admin("groups", "create", values));
  form("#chat-create", (values) => admin("chats", "create", values));
  form("#wiring-create", (values) => admin("wirings", "create", values));
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

start().catch(showError);
