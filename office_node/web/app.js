/*
 * The officer's page for a BLO Bus office node: live feed, compose, detail, search, outbox,
 * and the border check (is this passport, person, plate or phone flagged?) with lookout hits.
 *
 * Vanilla ES2020 module, no external assets: the page must work with no internet.
 * Bulletins come from other offices and are untrusted: every piece of data reaches the
 * DOM through textContent / createElement (the `el` helper), never through HTML parsing.
 *
 * ---------------------------------------------------------------------------------------
 * API contract this page relies on (JSON; errors are 4xx {"error":{"code","message"}}).
 * Times are integers, ms since the epoch UTC; the page shows them in local time.
 *
 *   GET  /health  -> {status, office, role, nats:"connected"|"disconnected", outbox_depth}
 *   GET  /api/me  -> {user:{username, display_name, role}, office, role, csrf_token}
 *                    401 => the page shows the login form. If office/role are missing
 *                    they are taken from /health.
 *   POST /login   body {username, password} -> 200 {user, csrf_token} + session cookie
 *                 (login.html also works as a plain form POST: the node redirects to "/"
 *                 or back to /login?error=<reason>)
 *   POST /logout  -> any 2xx
 *   GET  /api/bulletins?direction=received|sent&precedence=&kind=&feed=&unread=1&limit=50&cursor=
 *                 (direction omitted = both; empty filters omitted)
 *                 -> {items:[summary], next: cursor|null}
 *        summary = {id, from, precedence, kind, tlp, title, created, sent_at, received_at,
 *                   direction:"received"|"sent", feed, read}
 *   GET  /api/bulletins/{id} -> {bulletin: Bulletin.to_dict(), direction, feed, sent_at,
 *                   received_at, read, verification:{verified, signer, key_id, sent_at} | null,
 *                   receipts:[{recipient, state:"queued"|"sent"|"delivered"|"read", at}]}
 *   POST /api/bulletins  body {to:[office], feed:name|null, precedence, kind, tlp,
 *                   releasable_to:[cc], grading:"B2", title, body, expires:ms|null,
 *                   in_reply_to:null, entities:[{type, ...fields}], tags:[...]}
 *                 -> 201 {id, state}
 *   POST /api/bulletins/{id}/reply  same body WITHOUT to, feed and in_reply_to (the server
 *                   fills them from the original) -> 201 {id, state}
 *   POST /api/bulletins/{id}/read  (no body) -> {ok:true}
 *   GET  /api/search?q=&limit=50 -> {items:[summary]}
 *   GET  /api/outbox -> {items:[{id, title, precedence, created, recipients:[{recipient, state, at}]}]}
 *   GET  /api/directory -> {offices:[{office, name, country, role, sign_kid, box_kid, valid_until, revoked}]}
 *   GET  /api/feeds -> {feeds:[{name, epoch, members:[office]}]}
 *   POST /api/check  body = the entity to check, as in a bulletin (empty fields omitted):
 *                   {type:"document", doc_type, number, country} | {type:"person", name, dob,
 *                   nationality} | {type:"vehicle", plate, country} | {type:"phone", number}
 *                 -> {query, checked_at, flagged, matches:[match], mentions:[match]}
 *                   answered from the node's local index, so it works with the link down.
 *                   matches = active lookouts and alerts naming it (flagged = any);
 *                   mentions = other bulletins (incidents, replies...) naming it.
 *        match = {bulletin_id, sender, kind, precedence, tlp, grading:"B2", created,
 *                 expires|null, entity_index, key_kind, strength:"exact"|"similar",
 *                 title, entity:{type, ...fields}, direction:"received"|"sent"}
 *                 400 {error:{code, message, field}} for a query that names nothing
 *   GET  /api/hits -> {items:[hit]} newest first
 *        hit = {bulletin_id (the new bulletin), lookout_id, entity_index, lookout_sender,
 *               key_kind, strength:"exact"|"similar", at,
 *               notice:"sent"|"own"|"pending"|"withheld:<rule>", notice_id|null,
 *               lookout_title, bulletin_title, precedence (the lookout's)}
 *               (titles and precedence are null when that bulletin is not stored here)
 *   GET  /api/events  (text/event-stream) events:
 *                   "bulletin"   data = summary
 *                   "state"      data = {id, recipient, state}
 *                   "escalation" data = {id, message}
 *                   "hit"        data = hit (a new bulletin names an active lookout's subject)
 *
 * Every POST carries header X-CSRF-Token: the csrf_token of GET /api/me (fetched after
 * every login too; the login response's token is the fallback). Requests are same-origin
 * with the session cookie; nothing else is stored in the browser.
 * ---------------------------------------------------------------------------------------
 */

// ---- Vocabulary: mirrors bus/bulletin.py (tests/test_web_static.py keeps them equal) ----

export const PRECEDENCES = ["FLASH", "IMMEDIATE", "PRIORITY", "ROUTINE"];
export const TLP_LABELS = ["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"];
export const KINDS = ["lookout", "alert", "incident", "request_for_information", "reply", "strategic_intelligence"];
export const DOCUMENT_TYPES = ["passport", "id_card", "visa", "travel_document", "driving_licence", "other"];
export const DOCUMENT_STATUSES = ["stolen", "lost", "forged", "fraudulent", "revoked", "valid"];
export const RECEIPT_STATES = ["queued", "sent", "delivered", "read"];

// Admiralty grading, as officers know it.
export const SOURCE_RELIABILITY = {
  A: "Completely reliable", B: "Usually reliable", C: "Fairly reliable",
  D: "Not usually reliable", E: "Unreliable", F: "Reliability cannot be judged",
};
export const INFORMATION_CREDIBILITY = {
  1: "Confirmed by other sources", 2: "Probably true", 3: "Possibly true",
  4: "Doubtful", 5: "Improbable", 6: "Truth cannot be judged",
};

// Field kinds: text, country (2 capitals), date (YYYY[-MM[-DD]]), list (comma list of text),
// number, choice. "note" is common to every entity type and added by the form.
const f = (name, kind, required = false, choices = null) => ({ name, kind, required, choices });
export const ENTITY_FIELDS = {
  person: [f("name", "text", true), f("aliases", "list"), f("dob", "date"), f("nationality", "country"),
    f("sex", "choice", false, ["F", "M", "X"])],
  document: [f("doc_type", "choice", true, DOCUMENT_TYPES), f("number", "text", true), f("country", "country"),
    f("status", "choice", false, DOCUMENT_STATUSES), f("expiry", "date"), f("holder", "text")],
  vehicle: [f("plate", "text", true), f("country", "country"), f("make", "text"), f("model", "text"),
    f("colour", "text"), f("vin", "text")],
  vessel: [f("name", "text", true), f("imo", "text"), f("mmsi", "text"), f("flag", "country")],
  phone: [f("number", "text", true)],
  organisation: [f("name", "text", true), f("country", "country")],
  location: [f("name", "text", true), f("country", "country"), f("lat", "number"), f("lon", "number")],
};
const FIELD_HINTS = {
  dob: "YYYY-MM-DD", expiry: "YYYY-MM-DD", nationality: "LA", country: "TH", flag: "MM",
  imo: "7 digits", mmsi: "9 digits", number: "", lat: "16.54", lon: "104.72", aliases: "comma-separated",
};

// The border check: what an officer at the counter checks, and the fields the form asks for
// (names and kinds from ENTITY_FIELDS; the node's index keys on these). CHECK_KEY is the
// field that must be filled, and takes the focus so the officer can type straight away.
export const CHECK_FIELDS = {
  document: ["doc_type", "number", "country"],
  person: ["name", "dob", "nationality"],
  vehicle: ["plate", "country"],
  phone: ["number"],
};
const CHECK_KEY = { document: "number", person: "name", vehicle: "plate", phone: "number" };
const CHECK_TYPE_LABELS = { document: "Document", person: "Person", vehicle: "Vehicle", phone: "Phone" };
const CHECK_KEY_WORDS = { document: "document number", person: "name", vehicle: "plate", phone: "phone number" };
const CHECK_FIELD_LABELS = {
  doc_type: "Type", number: "Number", country: "Country", name: "Name", dob: "Date of birth",
  nationality: "Nationality", plate: "Plate",
};
const CHECK_HINTS = {
  "document.number": "P0847211", "person.name": "as written in the document", "vehicle.plate": "70-1234",
  "phone.number": "+856 20 5555 1234",
};

// A hit's notice state in the officer's words (office_node/lookouts.py notice_decision).
const NOTICE_WORDS = {
  sent: "originator notified",
  own: "our own lookout",
  pending: "notice to the originator pending",
  "withheld:not_releasable": "withheld: not releasable to their country",
  "withheld:tlp": "withheld: its TLP (RED or AMBER+STRICT) does not allow telling them",
};

export function noticeText(notice) {
  const n = String(notice ?? "");
  if (NOTICE_WORDS[n]) return NOTICE_WORDS[n];
  if (n.startsWith("withheld:")) return `withheld: ${n.slice("withheld:".length).replace(/_/g, " ")}`;
  return n || "unknown";
}

// ---- DOM helpers ------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/**
 * Create an element. Children that are strings become Text nodes (never parsed as HTML).
 * props: "class" -> className, "text" -> textContent, "on<event>" -> listener,
 * "hidden"/"disabled"/"checked"/"value"/"selected" -> property, anything else -> attribute.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (["hidden", "disabled", "checked", "value", "selected", "required"].includes(key)) node[key] = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replace a node's children; like `el`, null/false children are left out (not "null"). */
function setChildren(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function show(node, visible) { node.hidden = !visible; }

const pad2 = (n) => String(n).padStart(2, "0");

/** Local time as YYYY-MM-DD HH:MM:SS: unambiguous across the region's date conventions. */
export function formatTime(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function timeEl(ms) {
  const text = formatTime(ms);
  return el("time", typeof ms === "number" ? { datetime: new Date(ms).toISOString(), title: new Date(ms).toISOString() } : {}, text);
}

function cssToken(value) { return String(value).toLowerCase().replace(/[^a-z0-9]+/g, "-"); }

export function precedenceBadge(precedence) {
  const known = PRECEDENCES.includes(precedence);
  return el("span", { class: `badge prec prec-${known ? cssToken(precedence) : "unknown"}`, title: "Precedence" },
    known ? precedence : String(precedence ?? "?"));
}

export function tlpBadge(tlp) {
  const known = TLP_LABELS.includes(tlp);
  // TLP 2.0 labels are written "TLP:AMBER+STRICT"; colour per FIRST's spec (app.css).
  return el("span", { class: `badge tlp tlp-${known ? cssToken(tlp) : "unknown"}`, title: "Traffic Light Protocol 2.0" },
    `TLP:${known ? tlp : String(tlp ?? "?")}`);
}

function stateChip(stateName) {
  const known = RECEIPT_STATES.includes(stateName);
  return el("span", { class: `chip state-${known ? stateName : "unknown"}` }, String(stateName ?? "?"));
}

function splitList(text, { upper = false } = {}) {
  const out = [];
  for (const part of String(text).split(/[\s,;]+/)) {
    const v = upper ? part.trim().toUpperCase() : part.trim();
    if (v && !out.includes(v)) out.push(v);
  }
  return out;
}

// ---- API --------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field; // the request field a 400 names, if any
  }
}

const state = {
  me: null,
  csrf: null,
  office: null,
  view: "feed",
  listMode: "feed", // "feed" or "search"
  items: [],
  next: null,
  selectedId: null,
  detail: null,
  directory: [],
  feeds: [],
  replyTo: null,
  releasableTouched: false,
  events: null,
  eventsRetry: 0,
  eventsTimer: null,
  eventsHadError: false,
  healthTimer: null,
  loggedIn: false,
  nats: null, // "connected" | "disconnected", from /health
  checkSeq: 0, // answers to an older check (or one the officer has since edited) are dropped
  hits: [],
  hitsUnseen: 0,
};

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (method !== "GET") {
    if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", "Cannot reach the office node. Check that it is running.");
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const e = data && data.error ? data.error : {};
    const error = new ApiError(response.status, e.code || `http_${response.status}`,
      e.message || `The node answered ${response.status} ${response.statusText}`,
      typeof e.field === "string" ? e.field : null);
    // A lapsed session anywhere sends the officer back to the login form, except for
    // the login request itself (its 401 means "wrong password").
    if (response.status === 401 && path !== "/login" && state.loggedIn) showLogin("Your session has ended. Sign in again.");
    throw error;
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "" || v === false) continue;
    q.set(k, v === true ? "1" : String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

function status(message) { $("st-message").textContent = message || ""; }

// ---- Login / logout ---------------------------------------------------------------------

function showLogin(message) {
  stopBackground();
  state.loggedIn = false;
  state.csrf = null;
  state.me = null;
  // The next officer at this screen sees nothing of the last one's checks or hits.
  state.hits = [];
  state.hitsUnseen = 0;
  renderHits();
  renderHitsUnseen();
  resetCheck();
  show($("boot"), false);
  show($("app"), false);
  show($("login-view"), true);
  const err = $("login-error");
  err.textContent = message || "";
  show(err, Boolean(message));
  $("login-password").value = "";
  $("login-username").focus();
}

async function onLogin(event) {
  event.preventDefault();
  const err = $("login-error");
  show(err, false);
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  if (!username || !password) {
    err.textContent = "Enter your username and password.";
    show(err, true);
    return;
  }
  try {
    const result = await api("POST", "/login", { username, password });
    state.csrf = result && result.csrf_token ? result.csrf_token : null;
    await boot();
  } catch (e) {
    err.textContent = e.status === 401 ? "Wrong username or password." : e.message;
    show(err, true);
  }
}

async function onLogout() {
  try { await api("POST", "/logout"); } catch (e) { /* the session is dropped locally anyway */ }
  showLogin("Signed out.");
}

// ---- Boot -------------------------------------------------------------------------------

async function boot() {
  let me;
  try {
    me = await api("GET", "/api/me");
  } catch (e) {
    if (e.status === 401) { showLogin(""); return; }
    showLogin(e.message);
    return;
  }
  state.me = me;
  if (me.csrf_token) state.csrf = me.csrf_token;
  state.loggedIn = true;
  // The office id comes from /api/me; /health names it too, as a fallback.
  let health = null;
  if (!me.office) {
    try { health = await api("GET", "/health"); } catch (e) { health = null; }
  }
  me.office = me.office || (health && health.office) || "";
  me.role = me.role || (health && health.role) || "";
  state.office = me.office;

  const user = me.user || {};
  $("top-office").textContent = me.office || "";
  $("top-user").textContent = `${user.display_name || user.username || ""}${user.role ? ` (${user.role})` : ""}`;
  $("st-office").textContent = me.office || "?";
  $("st-role").textContent = me.role || "";
  document.title = `BLO Bus · ${me.office || ""}`;
  show($("boot"), false);
  show($("login-view"), false);
  show($("app"), true);

  setView(state.view);
  if (state.view === "check") focusCheckKey();
  await Promise.all([loadDirectory(), loadFeeds(), loadList(), refreshHealth(), loadHits()]);
  startEvents();
  state.healthTimer = setInterval(refreshHealth, 10000);
}

function stopBackground() {
  if (state.events) { state.events.close(); state.events = null; }
  if (state.eventsTimer) { clearTimeout(state.eventsTimer); state.eventsTimer = null; }
  if (state.healthTimer) { clearInterval(state.healthTimer); state.healthTimer = null; }
}

// ---- Views ------------------------------------------------------------------------------

const VIEWS = ["check", "feed", "compose", "outbox"];

/** The view named by the address (e.g. a counter workstation's bookmark of /#check). */
function viewFromHash() {
  const name = window.location.hash.slice(1);
  return VIEWS.includes(name) ? name : null;
}

function setView(view) {
  if (!VIEWS.includes(view)) view = "feed";
  state.view = view;
  for (const name of VIEWS) show($(`view-${name}`), name === view);
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-pressed", String(tab.dataset.view === view));
  if (view === "outbox") loadOutbox();
  if (view === "check") { state.hitsUnseen = 0; renderHitsUnseen(); }
  // The address names the view, so a reload (or a bookmark) comes back to it.
  const target = view === "feed" ? `${window.location.pathname}${window.location.search}` : `#${view}`;
  if (window.location.hash !== (view === "feed" ? "" : `#${view}`)) window.history.replaceState(null, "", target);
}

// ---- Feed list --------------------------------------------------------------------------

function filters() {
  return {
    direction: $("filter-direction").value,
    precedence: $("filter-precedence").value,
    kind: $("filter-kind").value,
    feed: $("filter-feed").value,
    unread: $("filter-unread").checked,
  };
}

function matchesFilters(summary) {
  const fl = filters();
  if (fl.direction && summary.direction !== fl.direction) return false;
  if (fl.precedence && summary.precedence !== fl.precedence) return false;
  if (fl.kind && summary.kind !== fl.kind) return false;
  if (fl.feed && summary.feed !== fl.feed) return false;
  if (fl.unread && summary.read) return false;
  return true;
}

async function loadList({ append = false } = {}) {
  state.listMode = "feed";
  show($("search-heading"), false);
  show($("feed-controls"), true);
  const params = { ...filters(), limit: 50 };
  if (append && state.next) params.cursor = state.next;
  try {
    const data = await api("GET", `/api/bulletins${query(params)}`);
    const items = Array.isArray(data && data.items) ? data.items : [];
    state.items = append ? state.items.concat(items) : items;
    state.next = data && data.next ? data.next : null;
    renderList();
  } catch (e) {
    status(`Could not load bulletins: ${e.message}`);
  }
}

function summaryItem(s) {
  const received = s.direction !== "sent";
  const who = received ? `${s.from ?? "?"}` : "Sent";
  const button = el("button", {
    type: "button",
    class: "item-button",
    onclick: () => openDetail(s.id),
  },
  el("span", { class: "item-meta" },
    precedenceBadge(s.precedence),
    tlpBadge(s.tlp),
    el("span", { class: `who ${received ? "" : "sent"}` }, who),
    s.feed ? el("span", { class: "feed-name", title: "Feed" }, `#${s.feed}`) : null,
    el("span", { class: "kind" }, String(s.kind ?? "")),
    el("span", { class: "when" }, timeEl(received ? (s.received_at ?? s.created) : (s.sent_at ?? s.created)))),
  el("span", { class: "item-title" }, String(s.title ?? "")));
  const li = el("li", { class: `item${s.read ? "" : " unread"}${s.id === state.selectedId ? " selected" : ""}` }, button);
  li.dataset.id = String(s.id);
  return li;
}

function renderList() {
  const list = $("feed-list");
  list.replaceChildren(...state.items.map(summaryItem));
  show($("feed-empty"), state.items.length === 0);
  show($("feed-more"), state.listMode === "feed" && Boolean(state.next));
}

function markListRead(id) {
  for (const s of state.items) if (s.id === id) s.read = true;
  for (const li of $("feed-list").children) if (li.dataset.id === id) li.classList.remove("unread");
}

// ---- Search -----------------------------------------------------------------------------

async function onSearch(event) {
  event.preventDefault();
  const q = $("search-input").value.trim();
  if (!q) { loadList(); return; }
  setView("feed");
  try {
    const data = await api("GET", `/api/search${query({ q, limit: 50 })}`);
    state.listMode = "search";
    state.items = Array.isArray(data && data.items) ? data.items : [];
    state.next = null;
    $("search-summary").textContent = `${state.items.length} result${state.items.length === 1 ? "" : "s"} for “${q}”`;
    show($("search-heading"), true);
    show($("feed-controls"), false);
    renderList();
  } catch (e) {
    status(`Search failed: ${e.message}`);
  }
}

// ---- Detail -----------------------------------------------------------------------------

async function openDetail(id) {
  state.selectedId = id;
  for (const li of $("feed-list").children) li.classList.toggle("selected", li.dataset.id === id);
  setView("feed");
  const pane = $("detail");
  try {
    const data = await api("GET", `/api/bulletins/${encodeURIComponent(id)}`);
    if (state.selectedId !== id) return; // the officer clicked on something else meanwhile
    state.detail = data;
    renderDetail();
  } catch (e) {
    pane.replaceChildren(el("p", { class: "error pad" }, `Could not open the bulletin: ${e.message}`));
  }
}

function row(label, ...value) {
  return el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, ...value));
}

function gradingText(grading) {
  const g = String(grading ?? "");
  const src = SOURCE_RELIABILITY[g[0]];
  const inf = INFORMATION_CREDIBILITY[g[1]];
  return src && inf ? `${g} — ${src}; ${inf}` : g;
}

function verificationBlock(v) {
  if (!v) return el("div", { class: "sig sig-unknown" }, "No signature record for this bulletin.");
  const ok = v.verified === true;
  return el("div", { class: `sig ${ok ? "sig-ok" : "sig-bad"}`, id: "signature" },
    el("strong", {}, ok ? "✔ Signature verified" : "✘ Signature NOT verified"),
    el("table", { class: "kv" }, el("tbody", {},
      row("Signer office", String(v.signer ?? "?")),
      row("Key id", el("code", { class: "key-id" }, String(v.key_id ?? "?"))),
      row("Verified", ok ? "yes" : "no"),
      row("Signed / sent at", timeEl(v.sent_at)))));
}

function receiptsTable(receipts) {
  const list = Array.isArray(receipts) ? receipts.slice() : [];
  list.sort((a, b) => String(a.recipient).localeCompare(String(b.recipient)));
  if (list.length === 0) return el("p", { class: "muted" }, "No receipts.");
  return el("table", { class: "receipts" },
    el("thead", {}, el("tr", {}, el("th", {}, "Recipient"), el("th", {}, "State"), el("th", {}, "At"))),
    el("tbody", {}, list.map((r) => {
      const tr = el("tr", {}, el("td", {}, String(r.recipient ?? "?")), el("td", {}, stateChip(r.state)), el("td", {}, timeEl(r.at)));
      tr.dataset.recipient = String(r.recipient);
      return tr;
    })));
}

/** An entity's fields as "key: value" spans (everything but its type). */
function entityParts(entity) {
  const parts = [];
  for (const [k, v] of Object.entries(entity && typeof entity === "object" ? entity : {})) {
    if (k === "type") continue;
    parts.push(el("span", { class: "ef" }, el("span", { class: "ek" }, `${k}: `),
      el("span", { class: "ev" }, Array.isArray(v) ? v.join(", ") : String(v))));
  }
  return parts;
}

function entityTable(entities) {
  const list = Array.isArray(entities) ? entities : [];
  if (list.length === 0) return null;
  return el("section", { class: "entities-view" }, el("h3", {}, `Entities (${list.length})`),
    el("ul", { class: "entity-list" }, list.map((entity) =>
      el("li", {}, el("span", { class: "etype" }, String(entity && entity.type)), ...entityParts(entity)))));
}

function renderDetail() {
  const d = state.detail;
  const b = (d && d.bulletin) || {};
  const pane = $("detail");
  const received = d.direction !== "sent";
  const actions = el("div", { class: "actions" },
    received && !d.read ? el("button", { type: "button", id: "mark-read", onclick: () => markRead(b.id) }, "Mark read") : null,
    received && d.read ? el("span", { class: "muted" }, "Read") : null,
    el("button", { type: "button", id: "reply-button", class: "primary", onclick: () => startReply(d) }, "Reply"));

  setChildren(pane,
    el("header", { class: "detail-head" },
      el("div", { class: "badges" }, precedenceBadge(b.precedence), tlpBadge(b.tlp),
        el("span", { class: "kind" }, String(b.kind ?? ""))),
      el("h2", { id: "detail-title", class: "detail-title" }, String(b.title ?? "")),
      actions),
    el("table", { class: "kv" }, el("tbody", {},
      row("From", String(b.from ?? "?")),
      row("Direction", received ? "received" : "sent"),
      d.feed ? row("Feed", `#${d.feed}`) : null,
      row("Id", el("code", {}, String(b.id ?? ""))),
      row("Releasable to", (b.releasable_to || []).join(", ")),
      row("Grading", gradingText(b.grading)),
      row("Created", timeEl(b.created)),
      row("Sent", timeEl(d.sent_at)),
      row("Received", timeEl(d.received_at)),
      b.expires ? row("Expires", timeEl(b.expires)) : null,
      b.in_reply_to ? row("In reply to", el("button", { type: "button", class: "link", onclick: () => openDetail(b.in_reply_to) }, String(b.in_reply_to))) : null,
      b.tags && b.tags.length ? row("Tags", b.tags.map((t) => el("span", { class: "tag" }, String(t)))) : null)),
    el("div", { class: "body-text", id: "detail-body" }, String(b.body ?? "")),
    entityTable(b.entities),
    el("section", {}, el("h3", {}, "Signature"), verificationBlock(d.verification)),
    el("section", {}, el("h3", {}, "Receipts"), el("div", { id: "receipts" }, receiptsTable(d.receipts))),
  );
  pane.scrollTop = 0;
}

async function markRead(id) {
  try {
    await api("POST", `/api/bulletins/${encodeURIComponent(id)}/read`);
    if (state.detail && state.detail.bulletin && state.detail.bulletin.id === id) {
      state.detail.read = true;
      renderDetail();
    }
    markListRead(id);
  } catch (e) {
    status(`Could not mark read: ${e.message}`);
  }
}

// ---- Compose ----------------------------------------------------------------------------

function fillSelect(select, values, labels = null, names = null) {
  select.append(...values.map((v) => el("option", { value: v }, names ? names[v] : labels ? `${v} — ${labels[v]}` : v)));
}

async function loadDirectory() {
  try {
    const data = await api("GET", "/api/directory");
    state.directory = Array.isArray(data && data.offices) ? data.offices : [];
  } catch (e) {
    state.directory = [];
    status(`Directory unavailable: ${e.message}`);
  }
  const box = $("to-offices");
  const offices = state.directory.filter((o) => !o.revoked && o.office !== state.office)
    .sort((a, b) => String(a.office).localeCompare(String(b.office)));
  box.replaceChildren(...offices.map((o) => el("label", { class: "check", title: String(o.name ?? "") },
    el("input", { type: "checkbox", value: String(o.office), class: "to-office", onchange: autoReleasable }),
    el("span", {}, String(o.office)), o.name ? el("span", { class: "muted" }, ` ${o.name}`) : null)));
  if (offices.length === 0) box.append(el("span", { class: "muted" }, "No offices in the directory yet: type ids below."));
}

async function loadFeeds() {
  try {
    const data = await api("GET", "/api/feeds");
    state.feeds = Array.isArray(data && data.feeds) ? data.feeds : [];
  } catch (e) {
    state.feeds = [];
  }
  for (const id of ["to-feed", "filter-feed"]) {
    const select = $(id);
    const first = select.firstElementChild;
    select.replaceChildren(first, ...state.feeds.map((feed) => el("option", { value: String(feed.name) }, `#${feed.name}`)));
  }
}

function selectedRecipients() {
  const ticked = [...document.querySelectorAll(".to-office:checked")].map((c) => c.value);
  for (const id of splitList($("to-extra").value, { upper: true })) if (!ticked.includes(id)) ticked.push(id);
  return ticked;
}

/** Until the officer edits it, "releasable to" follows the recipients' countries. */
function autoReleasable() {
  if (state.releasableTouched || state.replyTo) return;
  const countries = [];
  const own = (state.office || "").slice(0, 2);
  if (own) countries.push(own);
  for (const id of selectedRecipients()) {
    const c = id.slice(0, 2);
    if (/^[A-Z]{2}$/.test(c) && !countries.includes(c)) countries.push(c);
  }
  $("c-releasable").value = countries.join(", ");
}

function entityInput(field) {
  const id = `ent-${Math.random().toString(36).slice(2)}`;
  let input;
  if (field.kind === "choice") {
    input = el("select", { id }, el("option", { value: "" }, field.required ? "— choose —" : "—"),
      field.choices.map((c) => el("option", { value: c }, c)));
  } else {
    input = el("input", {
      id,
      type: field.kind === "number" ? "number" : "text",
      step: field.kind === "number" ? "any" : null,
      maxlength: field.kind === "country" ? 2 : 200,
      placeholder: FIELD_HINTS[field.name] || null,
      autocomplete: "off",
      spellcheck: "false",
    });
  }
  input.dataset.field = field.name;
  input.dataset.kind = field.kind;
  if (field.required) input.required = true;
  return el("label", { class: "ent-field", for: id }, `${field.name.replace("_", " ")}${field.required ? " *" : ""}`, input);
}

function addEntityRow(type) {
  const fields = ENTITY_FIELDS[type];
  if (!fields) return;
  const rowEl = el("div", { class: "entity-row" },
    el("span", { class: "etype" }, type),
    fields.map(entityInput),
    entityInput(f("note", "text")),
    el("button", { type: "button", class: "remove", title: "Remove this entity", onclick: () => rowEl.remove() }, "✕"));
  rowEl.dataset.type = type;
  $("entity-rows").append(rowEl);
  const first = rowEl.querySelector("input, select");
  if (first) first.focus();
}

function collectEntities() {
  const out = [];
  for (const rowEl of $("entity-rows").children) {
    const entity = { type: rowEl.dataset.type };
    for (const input of rowEl.querySelectorAll("[data-field]")) {
      const raw = input.value.trim();
      if (!raw) continue;
      const kind = input.dataset.kind;
      if (kind === "list") entity[input.dataset.field] = splitList(raw.replace(/;/g, ","));
      else if (kind === "number") entity[input.dataset.field] = Number(raw);
      else if (kind === "country") entity[input.dataset.field] = raw.toUpperCase();
      else entity[input.dataset.field] = raw;
    }
    out.push(entity);
  }
  return out;
}

function composeError(message) {
  const err = $("compose-error");
  err.textContent = message;
  show(err, Boolean(message));
}

async function onCompose(event) {
  event.preventDefault();
  composeError("");
  show($("compose-result"), false);
  const source = $("c-source").value;
  const information = $("c-information").value;
  const expiresText = $("c-expires").value;
  const expires = expiresText ? new Date(expiresText).getTime() : null;
  const payload = {
    precedence: $("c-precedence").value,
    kind: $("c-kind").value,
    tlp: $("c-tlp").value,
    releasable_to: splitList($("c-releasable").value, { upper: true }),
    grading: `${source}${information}`,
    title: $("c-title").value.trim(),
    body: $("c-body").value,
    expires: Number.isFinite(expires) ? expires : null,
    entities: collectEntities(),
    tags: splitList($("c-tags").value),
  };
  const replyTo = state.replyTo;
  if (!replyTo) {
    payload.to = selectedRecipients();
    payload.feed = $("to-feed").value || null;
    payload.in_reply_to = null;
    if (payload.to.length === 0 && !payload.feed) return composeError("Choose at least one office or a feed.");
  }
  if (!source || !information) return composeError("Grade the source (A-F) and the information (1-6).");
  if (!payload.title) return composeError("The title must not be empty.");
  if (payload.releasable_to.length === 0) return composeError("Name at least one country the bulletin may reach.");

  const send = $("compose-send");
  send.disabled = true;
  try {
    const path = replyTo ? `/api/bulletins/${encodeURIComponent(replyTo.id)}/reply` : "/api/bulletins";
    const result = await api("POST", path, payload);
    const out = $("compose-result");
    out.replaceChildren(`Queued for delivery: ${payload.title} `,
      el("button", { type: "button", class: "link", onclick: () => openDetail(result.id) }, String(result.id)),
      ` (${result.state ?? "queued"})`);
    show(out, true);
    resetCompose();
    refreshHealth();
    if (state.view === "outbox") loadOutbox();
  } catch (e) {
    composeError(e.message);
  } finally {
    send.disabled = false;
  }
}

function resetCompose() {
  $("compose-form").reset();
  $("entity-rows").replaceChildren();
  state.replyTo = null;
  state.releasableTouched = false;
  show($("reply-banner"), false);
  show($("recipients-fieldset"), true);
  $("c-precedence").value = "ROUTINE";
  $("c-tlp").value = "AMBER";
  autoReleasable();
}

function startReply(detail) {
  const b = detail.bulletin || {};
  resetCompose();
  show($("compose-result"), false);
  state.replyTo = { id: b.id, from: b.from };
  $("reply-text").textContent = `Reply to ${b.from ?? "?"}: ${b.title ?? ""}`;
  show($("reply-banner"), true);
  show($("recipients-fieldset"), false);
  $("c-kind").value = "reply";
  if (PRECEDENCES.includes(b.precedence)) $("c-precedence").value = b.precedence;
  if (TLP_LABELS.includes(b.tlp)) $("c-tlp").value = b.tlp;
  $("c-releasable").value = (b.releasable_to || []).join(", ");
  const title = String(b.title ?? "");
  $("c-title").value = (title.startsWith("Re: ") ? title : `Re: ${title}`).slice(0, 300);
  setView("compose");
  $("c-body").focus();
}

// ---- Outbox -----------------------------------------------------------------------------

async function loadOutbox() {
  try {
    const data = await api("GET", "/api/outbox");
    const items = Array.isArray(data && data.items) ? data.items : [];
    $("outbox-body").replaceChildren(...items.map((item) => {
      const tr = el("tr", {},
        el("td", {}, precedenceBadge(item.precedence)),
        el("td", {}, el("button", { type: "button", class: "link", onclick: () => openDetail(item.id) }, String(item.title ?? item.id))),
        el("td", {}, timeEl(item.created)),
        el("td", { class: "recips" }, (item.recipients || []).map(recipientChip)));
      tr.dataset.id = String(item.id);
      return tr;
    }));
    show($("outbox-empty"), items.length === 0);
  } catch (e) {
    status(`Could not load the outbox: ${e.message}`);
  }
}

function recipientChip(r) {
  const chip = el("span", { class: "recipient", title: r.at ? formatTime(r.at) : "" },
    el("span", { class: "rname" }, String(r.recipient ?? "?")), stateChip(r.state));
  chip.dataset.recipient = String(r.recipient);
  return chip;
}

// ---- Border check -----------------------------------------------------------------------

function renderCheckFields(type) {
  const specs = ENTITY_FIELDS[type] || [];
  $("check-fields").replaceChildren(...(CHECK_FIELDS[type] || []).map((name) => {
    const spec = specs.find((s) => s.name === name) || f(name, "text");
    const id = `check-${name}`;
    const input = spec.kind === "choice"
      ? el("select", { id }, spec.choices.map((c) => el("option", { value: c }, c.replace(/_/g, " "))))
      : el("input", {
        id,
        type: "text",
        maxlength: spec.kind === "country" ? 2 : 200,
        placeholder: CHECK_HINTS[`${type}.${name}`] || FIELD_HINTS[name] || null,
        autocomplete: "off",
        autocapitalize: spec.kind === "country" ? "characters" : null,
        spellcheck: "false",
      });
    input.dataset.field = name;
    input.dataset.kind = spec.kind;
    const key = name === CHECK_KEY[type];
    return el("label", { class: `check-field check-${spec.kind}${key ? " check-key" : ""}` },
      `${CHECK_FIELD_LABELS[name] || name}${key ? " *" : ""}`, input);
  }));
}

function resetCheck() {
  $("check-form").reset();
  renderCheckFields($("check-type").value);
  clearCheck();
}

function focusCheckKey(select = false) {
  const input = $(`check-${CHECK_KEY[$("check-type").value]}`);
  if (!input) return;
  input.focus();
  if (select) input.select();
}

/** The entity the form describes: filled fields only, trimmed, countries in capitals. */
function checkQuery() {
  const query = { type: $("check-type").value };
  for (const input of $("check-fields").querySelectorAll("[data-field]")) {
    const raw = input.value.trim();
    if (raw) query[input.dataset.field] = input.dataset.kind === "country" ? raw.toUpperCase() : raw;
  }
  return query;
}

function checkError(message, field = null) {
  const err = $("check-error");
  err.textContent = message || "";
  show(err, Boolean(message));
  for (const input of $("check-fields").querySelectorAll("[data-field]")) {
    if (field && input.dataset.field === field) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

/** The form changed: an answer on screen would be about something else now, so it goes. */
function clearCheck() {
  state.checkSeq++;
  $("check-submit").disabled = false;
  $("check-result").replaceChildren();
  checkError("");
}

async function onCheck(event) {
  event.preventDefault();
  clearCheck();
  const query = checkQuery();
  if (!query[CHECK_KEY[query.type]]) {
    checkError(`Enter the ${CHECK_KEY_WORDS[query.type] || "value"} to check.`, CHECK_KEY[query.type]);
    focusCheckKey();
    return;
  }
  const seq = state.checkSeq;
  const button = $("check-submit");
  button.disabled = true;
  $("check-result").replaceChildren(el("p", { class: "muted" }, "Checking…"));
  try {
    // The link state is read along with the answer: the answer says if lookouts may be missing.
    const [result] = await Promise.all([api("POST", "/api/check", query), refreshHealth()]);
    if (seq !== state.checkSeq) return;
    renderCheckResult(result || {}, query);
    focusCheckKey(true); // ready for the next traveller: typing replaces the number
  } catch (e) {
    if (seq !== state.checkSeq) return;
    $("check-result").replaceChildren();
    // Never leave room to read a failure as CLEAR.
    checkError(`Not checked: ${e.message}`, e.field);
  } finally {
    if (seq === state.checkSeq) button.disabled = false;
  }
}

function checkedThing(query) {
  if (query.type === "document") return query.doc_type ? String(query.doc_type).replace(/_/g, " ") : "document";
  if (query.type === "phone") return "phone number";
  return String(query.type ?? "entity");
}

function strengthChip(strength, keyKind) {
  const known = strength === "exact" || strength === "similar";
  return el("span", {
    class: `chip strength strength-${known ? strength : "unknown"}`,
    title: strength === "similar" ? "A similar spelling of the name (romanisation-tolerant): compare the other details"
      : keyKind ? `Matched on: ${keyKind}` : null,
  }, strength === "exact" ? "exact match" : strength === "similar" ? "similar spelling" : String(strength ?? "?"));
}

function bulletinLink(title, id, cls) {
  const text = String(title ?? id ?? "?");
  if (typeof id !== "string") return el("span", { class: cls }, text);
  return el("button", { type: "button", class: `link ${cls}`, onclick: () => openDetail(id) }, text);
}

function matchItem(m) {
  const entity = m.entity && typeof m.entity === "object" ? m.entity : null;
  const li = el("li", { class: "match" },
    el("div", { class: "match-meta" },
      precedenceBadge(m.precedence), tlpBadge(m.tlp),
      el("span", { class: "kind" }, String(m.kind ?? "")),
      strengthChip(m.strength, m.key_kind),
      el("span", { class: "who", title: "Sender" }, `${m.sender ?? "?"}${m.direction === "sent" ? " (sent from here)" : ""}`),
      el("span", { class: "when" }, timeEl(m.created))),
    bulletinLink(m.title, m.bulletin_id, "match-title"),
    el("div", { class: "match-grading" }, el("span", { class: "ek" }, "Grading: "), gradingText(m.grading)),
    entity ? el("div", { class: "match-entity" }, el("span", { class: "etype" }, String(entity.type ?? "")), ...entityParts(entity)) : null,
    typeof m.expires === "number" ? el("div", { class: "match-expires muted" }, "Expires ", timeEl(m.expires)) : null);
  li.dataset.id = String(m.bulletin_id);
  return li;
}

function renderCheckResult(result, sent) {
  const matches = Array.isArray(result.matches) ? result.matches : [];
  const mentions = Array.isArray(result.mentions) ? result.mentions : [];
  // A flag without listed matches is still a flag: err on the side of stopping the traveller.
  const flagged = result.flagged === true || matches.length > 0;
  const query = result.query && typeof result.query === "object" ? result.query : sent;
  const n = matches.length;
  const thing = checkedThing(query);
  const verdict = el("div", { id: "check-verdict", class: `verdict ${flagged ? "verdict-flagged" : "verdict-clear"}` },
    el("span", { class: "verdict-word" }, flagged ? "FLAGGED" : "CLEAR"),
    el("span", { class: "verdict-detail" }, !flagged ? `No active lookout held on this node names this ${thing}`
      : n ? `${n} active lookout${n === 1 ? "" : "s"} on this node name${n === 1 ? "s" : ""} this ${thing}`
        : `The node flags this ${thing} but listed no lookout: ask your supervisor`));
  const provenance = el("p", { id: "check-provenance", class: "check-provenance" },
    el("span", { class: "etype" }, String(query.type ?? "")), ...entityParts(query),
    el("br"),
    el("span", { class: "muted" }, "Checked at ", timeEl(result.checked_at),
      ` on ${state.office || "this node"}'s local copy of the bulletins (works while the link is down).`));
  const linkDown = state.nats === "disconnected"
    ? el("p", { class: "warn" }, "The link to the bus is down: lookouts sent since it dropped have not reached this node yet. Check again when it is back.")
    : null;
  const section = (heading, note, items, id, cls) => el("section", { class: "check-section" },
    el("h3", {}, heading), note ? el("p", { class: "muted note" }, note) : null,
    el("ul", { id, class: `match-list ${cls}` }, items.map(matchItem)));
  setChildren($("check-result"), verdict, provenance, linkDown,
    n ? section(`Active lookouts (${n})`, null, matches, "check-matches", "matches") : null,
    mentions.length
      ? section(`Also mentioned in (${mentions.length})`, "Not lookouts: other bulletins (incidents, replies, intelligence) that name it.",
        mentions, "check-mentions", "mentions")
      : null);
}

// ---- Lookout hits -------------------------------------------------------------------------

const hitKey = (h) => `${h.bulletin_id}|${h.lookout_id}|${h.entity_index}`;
const isHit = (h) => Boolean(h) && typeof h.bulletin_id === "string" && typeof h.lookout_id === "string";
const MAX_HITS = 100;

/** Merge hits into the list, newest first; a hit seen twice (live and loaded) is kept once. */
function mergeHits(items) {
  const byKey = new Map(state.hits.map((h) => [hitKey(h), h]));
  for (const h of items) byKey.set(hitKey(h), h);
  state.hits = [...byKey.values()].sort((a, b) => (Number(b.at) || 0) - (Number(a.at) || 0)).slice(0, MAX_HITS);
}

async function loadHits() {
  try {
    const data = await api("GET", "/api/hits");
    mergeHits((Array.isArray(data && data.items) ? data.items : []).filter(isHit));
    renderHits();
  } catch (e) {
    status(`Could not load lookout hits: ${e.message}`);
  }
}

function noticeLine(h) {
  const notice = String(h.notice ?? "");
  const kind = notice.startsWith("withheld:") ? "withheld" : cssToken(notice || "unknown");
  const title = kind === "withheld"
    ? `Not sent automatically: decide whether to tell ${h.lookout_sender ?? "the originator"} (reply to the lookout)`
    : null;
  return el("div", { class: `notice notice-${kind}`, title },
    el("span", { class: "ek" }, "Notice: "),
    el("span", {}, el("span", { class: "notice-text" }, noticeText(notice)),
      notice === "sent" && typeof h.notice_id === "string"
        ? [" ", el("button", { type: "button", class: "link", onclick: () => openDetail(h.notice_id) }, "open notice")] : null));
}

function hitItem(h) {
  const li = el("li", { class: "hit" },
    el("div", { class: "hit-meta" },
      h.precedence ? precedenceBadge(h.precedence) : null,
      strengthChip(h.strength, h.key_kind),
      el("span", { class: "when" }, timeEl(h.at))),
    el("div", { class: "hit-line" }, el("span", { class: "ek" }, "Lookout: "),
      bulletinLink(h.lookout_title, h.lookout_id, "hit-lookout"),
      el("span", { class: "who", title: "Lookout from" }, ` ${h.lookout_sender ?? "?"}`)),
    el("div", { class: "hit-line" }, el("span", { class: "ek" }, "Named in: "),
      bulletinLink(h.bulletin_title, h.bulletin_id, "hit-bulletin")),
    noticeLine(h));
  li.dataset.key = hitKey(h);
  return li;
}

function renderHits(freshKey = null) {
  $("hits-list").replaceChildren(...state.hits.map((h) => {
    const li = hitItem(h);
    if (freshKey && li.dataset.key === freshKey) li.classList.add("fresh");
    return li;
  }));
  show($("hits-empty"), state.hits.length === 0);
}

function renderHitsUnseen() {
  const badge = $("hits-unseen");
  badge.textContent = state.hitsUnseen ? String(state.hitsUnseen) : "";
  show(badge, state.hitsUnseen > 0);
}

function onLiveHit(h) {
  if (!isHit(h)) return;
  mergeHits([h]);
  renderHits(hitKey(h));
  if (state.view !== "check") { state.hitsUnseen++; renderHitsUnseen(); }
  const similar = h.strength === "similar" ? " (similar spelling)" : "";
  banner("hit", `HIT on lookout “${h.lookout_title ?? h.lookout_id}”${similar}: ${h.bulletin_title ?? h.bulletin_id}`, h.bulletin_id);
}

// ---- Health -----------------------------------------------------------------------------

async function refreshHealth() {
  try {
    const h = await api("GET", "/health");
    state.nats = h.nats === "connected" ? "connected" : "disconnected";
    const nats = $("st-nats");
    nats.textContent = h.nats === "connected" ? "connected" : "disconnected";
    nats.className = `dot ${h.nats === "connected" ? "up" : "down"}`;
    $("st-outbox").textContent = String(h.outbox_depth ?? "?");
  } catch (e) {
    const nats = $("st-nats");
    nats.textContent = "node unreachable";
    nats.className = "dot down";
  }
}

// ---- Live events ------------------------------------------------------------------------

function setLive(up, text) {
  const live = $("st-live");
  live.textContent = text || (up ? "connected" : "reconnecting");
  live.className = `dot ${up ? "up" : "down"}`;
}

function parseEvent(event) {
  try { return JSON.parse(event.data); } catch { return null; }
}

function startEvents() {
  if (state.events) state.events.close();
  const es = new EventSource("/api/events");
  state.events = es;
  es.addEventListener("open", () => {
    state.eventsRetry = 0;
    setLive(true);
    // Anything sent while we were away is in the store, not in the stream: reload.
    if (state.eventsHadError) {
      state.eventsHadError = false;
      if (state.listMode === "feed") loadList();
      if (state.view === "outbox") loadOutbox();
      loadHits();
      refreshHealth();
    }
  });
  es.addEventListener("error", () => {
    state.eventsHadError = true;
    setLive(false);
    // The browser retries by itself unless the server refused the stream (e.g. a 401
    // after the session ended): then the EventSource is CLOSED and we retry with backoff.
    if (es.readyState === EventSource.CLOSED && state.events === es) {
      es.close();
      state.events = null;
      const delay = Math.min(30000, 1000 * 2 ** Math.min(state.eventsRetry++, 5));
      state.eventsTimer = setTimeout(async () => {
        state.eventsTimer = null;
        try { await api("GET", "/api/me"); } catch (e) { if (e.status === 401) return; }
        if (state.loggedIn) startEvents();
      }, delay);
    }
  });
  es.addEventListener("bulletin", (event) => { const d = parseEvent(event); if (d) onLiveBulletin(d); });
  es.addEventListener("state", (event) => { const d = parseEvent(event); if (d) onLiveState(d); });
  es.addEventListener("escalation", (event) => { const d = parseEvent(event); if (d) onEscalation(d); });
  es.addEventListener("hit", (event) => { const d = parseEvent(event); if (d) onLiveHit(d); });
}

function onLiveBulletin(summary) {
  if (!summary || typeof summary.id !== "string") return;
  if (state.listMode === "feed" && matchesFilters(summary) && !state.items.some((s) => s.id === summary.id)) {
    state.items.unshift(summary);
    const li = summaryItem(summary);
    li.classList.add("fresh");
    $("feed-list").prepend(li);
    show($("feed-empty"), false);
  }
  if (summary.precedence === "FLASH" && summary.direction !== "sent") {
    banner("flash", `FLASH from ${summary.from ?? "?"}: ${summary.title ?? ""}`, summary.id);
  }
}

function onLiveState(change) {
  if (!change || typeof change.id !== "string") return;
  const at = Date.now();
  // Outbox row
  for (const tr of $("outbox-body").children) {
    if (tr.dataset.id !== change.id) continue;
    const cell = tr.querySelector(".recips");
    const fresh = recipientChip({ recipient: change.recipient, state: change.state, at });
    const old = [...cell.children].find((c) => c.dataset.recipient === String(change.recipient));
    if (old) old.replaceWith(fresh); else cell.append(fresh);
  }
  // Open detail
  const d = state.detail;
  if (d && d.bulletin && d.bulletin.id === change.id && state.selectedId === change.id) {
    const receipts = Array.isArray(d.receipts) ? d.receipts : (d.receipts = []);
    const existing = receipts.find((r) => r.recipient === change.recipient);
    if (existing) { existing.state = change.state; existing.at = at; } else receipts.push({ recipient: change.recipient, state: change.state, at });
    const box = $("receipts");
    if (box) box.replaceChildren(receiptsTable(receipts));
  }
  refreshHealth();
}

function onEscalation(data) {
  if (!data) return;
  banner("escalation", String(data.message ?? "Escalation"), typeof data.id === "string" ? data.id : null);
}

function banner(kind, message, id) {
  const box = el("div", { class: `banner banner-${kind}`, role: "alert" },
    el("span", { class: "banner-text" }, message),
    id ? el("button", { type: "button", onclick: () => { openDetail(id); box.remove(); } }, "Open") : null,
    el("button", { type: "button", class: "dismiss", title: "Dismiss", onclick: () => box.remove() }, "✕"));
  const area = $("banners");
  area.prepend(box);
  // Keep the banner area small on a small screen: the oldest go first.
  while (area.children.length > 3) area.lastElementChild.remove();
}

// ---- Wiring -----------------------------------------------------------------------------

function init() {
  fillSelect($("filter-precedence"), PRECEDENCES);
  fillSelect($("filter-kind"), KINDS);
  fillSelect($("c-precedence"), PRECEDENCES);
  fillSelect($("c-kind"), KINDS);
  fillSelect($("c-tlp"), TLP_LABELS);
  $("c-source").append(el("option", { value: "" }, "— choose —"));
  fillSelect($("c-source"), Object.keys(SOURCE_RELIABILITY), SOURCE_RELIABILITY);
  $("c-information").append(el("option", { value: "" }, "— choose —"));
  fillSelect($("c-information"), Object.keys(INFORMATION_CREDIBILITY), INFORMATION_CREDIBILITY);
  fillSelect($("entity-type"), Object.keys(ENTITY_FIELDS));
  $("c-precedence").value = "ROUTINE";
  $("c-tlp").value = "AMBER";

  $("login-form").addEventListener("submit", onLogin);
  $("logout-button").addEventListener("click", onLogout);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      setView(tab.dataset.view);
      if (tab.dataset.view === "check") focusCheckKey();
    });
  }
  // F2 opens the check from anywhere: the counter's most frequent action, one key away.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "F2" || !state.loggedIn) return;
    event.preventDefault();
    setView("check");
    focusCheckKey(true);
  });
  fillSelect($("check-type"), Object.keys(CHECK_FIELDS), null, CHECK_TYPE_LABELS);
  renderCheckFields($("check-type").value);
  $("check-type").addEventListener("change", () => { renderCheckFields($("check-type").value); focusCheckKey(); });
  $("check-form").addEventListener("input", clearCheck);
  $("check-form").addEventListener("submit", onCheck);
  $("hits-refresh").addEventListener("click", loadHits);
  state.view = viewFromHash() || state.view;
  for (const id of ["filter-direction", "filter-precedence", "filter-kind", "filter-feed", "filter-unread"]) {
    $(id).addEventListener("change", () => loadList());
  }
  $("feed-more").addEventListener("click", () => loadList({ append: true }));
  $("search-form").addEventListener("submit", onSearch);
  $("search-clear").addEventListener("click", () => { $("search-input").value = ""; loadList(); });
  $("compose-form").addEventListener("submit", onCompose);
  $("compose-reset").addEventListener("click", (event) => { event.preventDefault(); resetCompose(); show($("compose-result"), false); composeError(""); });
  $("reply-cancel").addEventListener("click", () => {
    state.replyTo = null;
    show($("reply-banner"), false);
    show($("recipients-fieldset"), true);
    autoReleasable();
  });
  $("to-extra").addEventListener("input", autoReleasable);
  $("c-releasable").addEventListener("input", () => { state.releasableTouched = true; });
  $("entity-add").addEventListener("click", () => addEntityRow($("entity-type").value));
  $("outbox-refresh").addEventListener("click", loadOutbox);
  boot();
}

// ---- The separate sign-in page (login.html) ------------------------------------------------

const LOGIN_REASONS = {
  bad_credentials: "Wrong username or password.",
  rate_limited: "Too many failed sign-ins. Wait a few minutes and try again.",
  cross_origin: "The sign-in came from another site's page. Open this node's own page and try again.",
  unauthenticated: "Sign in to continue.",
};

/**
 * login.html is a plain HTML form that works without JavaScript (the node answers a form
 * POST with a redirect). With JavaScript, the form posts JSON instead so the node's exact
 * message (e.g. how long to wait) is shown, then opens the page.
 */
function initLoginPage() {
  const err = $("login-error");
  const reason = new URLSearchParams(window.location.search).get("error");
  if (reason) {
    err.textContent = LOGIN_REASONS[reason] || `Sign-in failed (${reason}).`;
    show(err, true);
  }
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    show(err, false);
    try {
      await api("POST", "/login", { username: $("login-username").value.trim(), password: $("login-password").value });
      window.location.assign(`/${viewFromHash() ? window.location.hash : ""}`);
    } catch (e) {
      err.textContent = e.status === 401 ? LOGIN_REASONS.bad_credentials : e.message;
      show(err, true);
    }
  });
}

if (document.body.dataset.page === "login") initLoginPage(); else init();
