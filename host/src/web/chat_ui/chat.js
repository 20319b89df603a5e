// crabpot web chat. Everything an agent writes is hostile: its text is turned into DOM nodes
// with textContent and createElement only (strings are never parsed as HTML), and the page's CSP allows
// no inline script, so no HTML or script from a reply can ever run.
"use strict";

const state = {
  csrf: null,
  conversation: null,
  source: null,
  seen: new Set(),      // durable event ids already shown
  drafts: new Map(),    // draft key -> element
  open: new Set(),      // the user's rows whose turn is not complete
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// One file, as the raw body, staged for the next message.
async function upload(base, file) {
  const response = await fetch(`${base}/uploads?name=${encodeURIComponent(file.name)}`, {
    method: "POST", credentials: "same-origin", body: file,
    headers: { "Content-Type": "application/octet-stream", "X-CSRF-Token": state.csrf || "" },
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// --- Markdown, rendered safely -------------------------------------------------------------

// Inline: `code`, **bold**, *italic*, [text](http(s) url). Anything else is text (underscores
// stay as written: `snake_case` and `__dunder__` names are common in agent output).
function inline(text) {
  const out = [];
  const pattern = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|(\[[^\]]+\]\([^)\s]+\))/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) out.push(text.slice(last, match.index));
    const token = match[0];
    if (match[1]) out.push(el("code", {}, token.slice(1, -1)));
    else if (match[2]) out.push(el("strong", {}, ...inline(token.slice(2, -2))));
    else if (match[3]) out.push(el("em", {}, ...inline(token.slice(1, -1))));
    else {
      const [, label, href] = token.match(/^\[([^\]]+)\]\(([^)\s]+)\)$/);
      if (/^https?:\/\//i.test(href)) {
        out.push(el("a", { href, target: "_blank", rel: "noopener noreferrer nofollow" }, label));
      } else {
        out.push(token);
      }
    }
    last = match.index + token.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function markdown(text) {
  const root = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let paragraph = [];
  let list = null;
  const flush = () => {
    if (paragraph.length) {
      const p = el("p");
      paragraph.forEach((line, i) => { if (i) p.append(el("br")); p.append(...inline(line)); });
      root.append(p);
      paragraph = [];
    }
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)(.*)$/);
    if (fence) {
      flush(); list = null;
      const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) body.push(lines[i]);
      const code = el("code", {}, body.join("\n"));
      const language = fence[2].trim();
      if (/^[\w+-]{1,20}$/.test(language)) code.className = "language-" + language;
      root.append(el("pre", {}, code));
      continue;
    }
    // The agent's plan (`todo_write`): lines `[status] text` (pending, in_progress, done,
    // failed, cancelled), edited in place as the agent works, shown as a checklist.
    const step = line.match(/^\[(pending|in_progress|done|failed|cancelled)\]\s+(.*)$/);
    if (step) {
      flush();
      if (!list || !list.classList.contains("plan")) {
        list = el("ul", { class: "plan" });
        root.append(list);
      }
      const box = el("input", { type: "checkbox", disabled: "", "aria-label": step[1] });
      box.checked = step[1] === "done";
      box.indeterminate = step[1] === "in_progress";
      list.append(el("li", { class: "step " + step[1] }, box, " ", ...inline(step[2])));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
    if (heading) {
      flush(); list = null;
      root.append(el("h" + Math.min(heading[1].length + 2, 6), {}, ...inline(heading[2])));
    } else if (item) {
      flush();
      const ordered = /\d/.test(item[1]);
      if (!list || (list.tagName === "OL") !== ordered) {
        list = el(ordered ? "ol" : "ul");
        root.append(list);
      }
      const checkbox = item[2].match(/^\[( |x|X)\]\s+(.*)$/);
      if (checkbox) {
        const box = el("input", { type: "checkbox", disabled: "" });
        box.checked = checkbox[1] !== " ";
        list.append(el("li", { class: "task" }, box, " ", ...inline(checkbox[2])));
      } else {
        list.append(el("li", {}, ...inline(item[2])));
      }
    } else if (line.trim() === "") {
      flush(); list = null;
    } else {
      list = null;
      paragraph.push(line);
    }
  }
  flush();
  return root;
}

// --- Messages --------------------------------------------------------------------------------

function messageNode(message) {
  const node = el("div", { class: "message " + message.role, "data-id": message.message_id });
  node.append(markdown(message.text || ""));
  if (message.files && message.files.length && message.event_id !== undefined) {
    const files = el("div", { class: "files" });
    message.files.forEach((name, index) => {
      const href = `/api/chat/conversations/${encodeURIComponent(state.conversation.id)}/files/${message.event_id}/${index}`;
      files.append(el("a", { href, download: name }, "⬇ " + name));
    });
    node.append(files);
  }
  if (message.question) node.append(questionNode(message.question));
  return node;
}

function questionNode(question) {
  const options = el("div", { class: "options" });
  for (const option of question.options) {
    options.append(el("button", {
      type: "button",
      onclick: async (event) => {
        options.querySelectorAll("button").forEach((b) => { b.disabled = true; });
        try {
          await api("POST", `/api/chat/conversations/${encodeURIComponent(state.conversation.id)}/answers`,
            { question_id: question.question_id, answer: option.answer });
          event.target.classList.add("chosen");
        } catch (e) {
          options.querySelectorAll("button").forEach((b) => { b.disabled = false; });
          notice(e.message);
        }
      },
    }, option.label));
  }
  return options;
}

function notice(text) {
  $("messages").append(el("div", { class: "message host" }, text));
  scrollDown();
}

function scrollDown() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function showMessage(message) {
  if (message.replaces_draft && state.drafts.has(message.replaces_draft)) {
    const draft = state.drafts.get(message.replaces_draft);
    draft.replaceWith(messageNode(message));
    state.drafts.delete(message.replaces_draft);
  } else {
    $("messages").append(messageNode(message));
  }
  if (message.role === "user") {
    (message.routed_ids || []).forEach((id) => state.open.add(id));
    updateBusy();
  }
  scrollDown();
}

function findMessage(id) {
  return [...$("messages").children].find((node) => node.dataset.id === id);
}

function updateBusy() {
  const busy = state.open.size > 0;
  $("stop").hidden = !busy;
}

function handle(event) {
  if (event.event_id !== undefined && event.event_id !== null) {
    if (state.seen.has(event.event_id)) return;
    state.seen.add(event.event_id);
  }
  switch (event.type) {
    case "message": {
      const message = { ...event };
      showMessage(message);
      break;
    }
    case "edit": {
      const node = findMessage(event.message_id);
      if (node) {
        const role = [...node.classList].find((c) => c !== "message") || "agent";
        node.replaceWith(messageNode({ message_id: event.message_id, role, text: event.text, question: event.question }));
      }
      break;
    }
    case "delete": {
      const node = findMessage(event.message_id);
      if (node) node.remove();
      break;
    }
    case "draft": {
      let node = state.drafts.get(event.key);
      if (!event.text) {
        if (node) { node.remove(); state.drafts.delete(event.key); }
        break;
      }
      const fresh = el("div", { class: "message agent draft", "data-draft": event.key }, markdown(event.text));
      if (node) node.replaceWith(fresh); else $("messages").append(fresh);
      state.drafts.set(event.key, fresh);
      $("typing").hidden = true;
      scrollDown();
      break;
    }
    case "typing":
      $("typing").hidden = !event.on;
      break;
    case "turn_complete":
      state.open.delete(event.message_id);
      if (state.open.size === 0) $("typing").hidden = true;
      updateBusy();
      break;
  }
}

// --- Conversations -------------------------------------------------------------------------

async function loadConversations() {
  const list = await api("GET", "/api/chat/conversations");
  const nav = $("conversations");
  nav.replaceChildren();
  for (const conversation of list.conversations || list) {
    const link = el("a", { href: "#" + conversation.id }, conversation.title || conversation.agent_group_id);
    if (state.conversation && state.conversation.id === conversation.id) link.classList.add("current");
    link.addEventListener("click", (event) => { event.preventDefault(); openConversation(conversation.id); });
    nav.append(link);
  }
}

async function openConversation(id) {
  if (state.source) { state.source.close(); state.source = null; }
  state.seen.clear(); state.drafts.clear(); state.open.clear();
  $("messages").replaceChildren();
  $("sidebar").classList.remove("open");
  const data = await api("GET", `/api/chat/conversations/${encodeURIComponent(id)}/messages`);
  state.conversation = data.conversation;
  history.replaceState(null, "", "#" + id);
  $("chat-title").textContent = data.conversation.title || data.conversation.agent_group_id;
  for (const message of data.messages) {
    if (message.event_id !== undefined) state.seen.add(message.event_id);
    showMessage(message);
  }
  $("composer").hidden = false;
  $("text").focus();
  listen(id, data.last_event_id || 0);
  loadConversations();
}

// Server-Sent Events. The browser reconnects by itself and sends Last-Event-ID, the id of the
// last durable event it got; before the first, `after` says where the messages above end.
// Events already shown are skipped by id, so nothing appears twice.
function listen(id, after) {
  const source = new EventSource(`/api/chat/conversations/${encodeURIComponent(id)}/events?after=${after}`);
  state.source = source;
  for (const type of ["message", "edit", "delete", "draft", "typing", "turn_complete"]) {
    source.addEventListener(type, (event) => {
      try { handle(JSON.parse(event.data)); } catch (e) { console.error(e); }
    });
  }
  source.onopen = () => { $("connection").textContent = ""; };
  source.onerror = () => { $("connection").textContent = "reconnecting…"; };
}

async function start() {
  const session = await api("GET", "/api/session");
  state.csrf = session.csrf_token;
  $("who").textContent = session.user_id;
  $("logout-csrf").value = session.csrf_token || "";
  $("dashboard-link").hidden = !session.admin;
  const groups = await api("GET", "/api/chat/groups");
  const select = $("group");
  for (const group of groups.groups || groups) {
    select.append(el("option", { value: group.id }, group.name || group.id));
  }
  $("new-conversation").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const created = await api("POST", "/api/chat/conversations", { group: select.value });
      await openConversation((created.conversation || created).id);
    } catch (e) { notice(e.message); }
  });
  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("text").value;
    const files = [...$("files").files];
    if ((!text.trim() && files.length === 0) || !state.conversation) return;
    $("send").disabled = true;
    try {
      const base = `/api/chat/conversations/${encodeURIComponent(state.conversation.id)}`;
      const uploads = [];
      for (const file of files) uploads.push((await upload(base, file)).upload_id);
      await api("POST", `${base}/messages`, { text, uploads });
      $("text").value = "";
      $("files").value = "";
      $("attached").textContent = "";
    } catch (e) { notice(e.message); }
    $("send").disabled = false;
  });
  $("files").addEventListener("change", () => {
    $("attached").textContent = [...$("files").files].map((f) => "📎 " + f.name).join("  ");
  });
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop").addEventListener("click", async () => {
    try { await api("POST", `/api/chat/conversations/${encodeURIComponent(state.conversation.id)}/stop`); }
    catch (e) { notice(e.message); }
  });
  $("show-sidebar").addEventListener("click", () => $("sidebar").classList.toggle("open"));
  await loadConversations();
  const wanted = location.hash.slice(1);
  if (wanted) await openConversation(wanted).catch((e) => notice(e.message));
}

start().catch((e) => console.error(e));
