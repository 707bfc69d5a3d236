/*
 * The officer's page for a BLO Bus office node: live feed, compose, detail, search, outbox,
 * and the border check (is this passport, person, plate or phone flagged?) with lookout hits.
 * On a coordination centre (role "centre") also the Centre view: the triage queue of the
 * country's office bulletins with notes, forwarding to a feed (optionally redacted), feed
 * membership, and the network of the country's offices with a 7-day volume chart each.
 *
 * Vanilla ES2020 module, no external assets: the page must work with no internet.
 * Bulletins come from other offices and are untrusted: every piece of data reaches the
 * DOM through textContent / createElement (the `el` helper), never through HTML parsing;
 * the network chart is inline SVG built the same way (`svg`, createElementNS), its
 * colours in app.css (the CSP allows no inline style).
 *
 * ---------------------------------------------------------------------------------------
 * API contract this page relies on (JSON; errors are 4xx {"error":{"code","message"}}).
 * Times are integers, ms since the epoch UTC; the page shows them in local time.
 *
 *   GET  /health  -> {status, office, role, nats:"connected"|"stalled"|"credentials_refused"|"disconnected",
 *                     outbox_depth}
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
 *                   direction:"received"|"sent", feed, read, forwarded_from, attribution}
 *                   (forwarded_from: the original office of a forward whose signature was
 *                   checked, else null; attribution: null unless a forward, see below)
 *   GET  /api/bulletins/{id} -> {bulletin: Bulletin.to_dict(), direction, feed, sent_at,
 *                   received_at, read, verification:{verified, signer, key_id, sent_at,
 *                   provenance?} | null, attribution,
 *                   receipts:[{recipient, state:"queued"|"sent"|"delivered"|"read"|"acknowledged", at}],
 *                   acknowledged: {by, at} | null (a FLASH received: who here acknowledged it),
 *                   escalations: [{level:"recipient_centre"|"own_centre", centre, offices, at}]}
 *   POST /api/bulletins/{id}/ack -> {ok, first, acknowledged:{by, at}} (a FLASH received here)
 *        attribution (a centre's forward; null otherwise) = {state, words_of, forwarded_by,
 *                   original_sender, original_id, text}: whose words the title, body and
 *                   entities are to be shown as (schemas/ENVELOPE.md 8.1). state is
 *                   "original_checked" (words_of = the original office, its signature
 *                   checked), "original_not_checked" (its key unknown here: words_of = the
 *                   centre), "redacted" (words_of = the centre: its own words citing the
 *                   original id) or "original_refused" (words_of = the centre). text is the
 *                   sentence to show. The page never shows a redacted or unchecked forward
 *                   as "from" the original office.
 *        provenance (a centre's forward; on every node) = {state, forwarded_by, original_id,
 *                   original_sender, original_sign_kid, original_sent_at, verified, redacted,
 *                   redacted_fields:[path], reason, text}; "verified" is the ORIGINAL's
 *                   signature (the outer verified/signer are the forwarding centre's);
 *                   text is the attribution's sentence. If checking failed it is only
 *                   {state:"original_refused", verified:false, reason, text}.
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
 *   GET  /api/feeds -> {feeds:[{name, epoch, members:[office], writers:[office] (members that may
 *                   post; the owner always may), ungranted:[office] (owned here: members still
 *                   without a grant of the current epoch), owner, owned_here, member_here,
 *                   subscribed, have_key, since, unpublished, requests:[{id, at, owner, add, remove,
 *                   answered_at, epoch, outcomes:[{office, change, result, reason}]}] (this centre's
 *                   membership requests to the feed's owner, newest first; schemas/FEEDS.md 16)}]}
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
 *
 * The centre (only when /api/me role == "centre"; an office node answers 403 not_centre).
 * Forwarding and feed changes need user role supervisor or admin (else 403 forbidden_role).
 *   GET  /api/triage?state=new|in_review|disseminated|closed (omitted = all)&limit=&cursor=
 *                 -> {counts:{new, in_review, disseminated, closed}, items:[{bulletin_id, state,
 *                    assignee, created_at, updated_at, updated_by, bulletin: summary|null,
 *                    notes: count}], next: cursor of the older page | null}
 *   GET  /api/triage/{id} -> item = {bulletin_id, state, assignee, created_at, updated_at,
 *                    updated_by, notes:[{author, at, text}]}
 *   POST /api/triage/{id}  body any of {state, note, assignee (null: nobody)} -> item (as GET)
 *                    400 field "state" for a move the workflow refuses (TRIAGE_MOVES)
 *   POST /api/bulletins/{id}/forward  body {feed, redact?:[path], tags?, releasable_to?,
 *                    tlp?, precedence?} (options only when changed; paths "title", "body",
 *                    "expires", "tags", "entities[0]", "entities[0].name", ...)
 *                 -> 201 {id, state, recipients, forward_of, redacted}; 422 codes tlp_no_feed,
 *                    not_releasable, precedence_downgrade, tlp_loosened, releasability_widened
 *                    (the message says what to change); 400 field "redact" for a bad path.
 *                    The triage item becomes disseminated.
 *   POST /api/feeds  body {name, members:[office], writers?:[office], scope?:[country]} -> 201 feed
 *   POST /api/feeds/{name}/members  body {add?:[office], remove?:[office], post?:bool} -> feed, or,
 *                    on a joint feed another centre owns, {name, requested_from, request_id, add,
 *                    remove} (asked of the owner); 403 other_country for another country's office
 *   POST /api/feeds/{name}/writers  body {add?:[office], remove?:[office]} -> feed (a new epoch in
 *                    which these members may, or may no longer, post); 403 not_owner on a feed
 *                    another centre owns
 *   POST /api/feeds/{name}/rotate -> feed (a new epoch: a fresh key)
 *   GET  /api/network -> {at, country, silent_after_ms, counts:{online, silent, never_seen},
 *                    offices:[{office, name, state:"online"|"silent"|"never_seen", flags:[silent|
 *                    never_seen|outbox_lag|unacked_flash|key_expiring|key_expired|clock_ahead],
 *                    last_seen, age_ms, outbox_depth, outbox_lag_ms, unacked_flash,
 *                    key_expires_at, software, days:[{start, sent, received}] (7, oldest
 *                    first; [] when never seen)}]}
 *   Strategic intelligence is POST /api/bulletins with kind strategic_intelligence and a feed.
 *
 *   GET  /api/events  (text/event-stream) events:
 *                   "bulletin"   data = summary
 *                   "state"      data = {id, recipient, state}
 *                   "escalation" data = {id, message}
 *                   "hit"        data = hit (a new bulletin names an active lookout's subject)
 *                   "triage"     data = {id, state} (centre: queued or moved)
 *                   "feed"       data = {feed, epoch, status} (an epoch or key arrived; "subscribed"/"left": this node started or stopped reading it; "requested"/"answered": a membership request to the owner, its outcome)
 *                   "heartbeat"  data = {office, sent_at} (centre: an office said it is alive)
 *                   "upload"     data = {id, n, bucket, sent, chunks} (chunks of a file stored on the bus)
 *                   "download"   data = {id, n, held, chunks} (chunks of a received file fetched and checked)
 *                   "attachment" data = {id, n, state: "complete"|"corrupt", reason?}
 *   Attachments: POST /api/bulletins as multipart/form-data: a "bulletin" part (the JSON
 *   above), then "file" parts. A detail has attachments:[{n, name, media_type, size,
 *   sha256, state: "queued"|"complete"|"refused"|"corrupt", held, chunks, sniffed, image,
 *   reason, message, uploads}] (never a key) and complete (every file here and checked).
 *   GET /api/bulletins/{id}/attachments/{n}: the file (a download); .../thumbnail and
 *   .../view: an image re-encoded by the node as JPEG.
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
export const RECEIPT_STATES = ["queued", "sent", "delivered", "read", "acknowledged", "held", "failed"];
// A FLASH waits for a person at each recipient to acknowledge it (office_node/flash.py):
// the words the page uses for it, in one place.
const FLASH_WORDS = {
  notAcknowledged: N_("not acknowledged"),
  acknowledge: N_("Acknowledge"),
  acknowledgeTitle: N_("Tell the sender a person here has seen this FLASH (a signed receipt); until then it escalates"),
  acknowledgedBy: (by) => _("Acknowledged by {by}", { by }),
  escalations: N_("Escalated to"),
  levels: { recipient_centre: N_("the recipient's centre"), own_centre: N_("our own centre") },
  failed: N_("Could not acknowledge"),
};
// The centre's triage workflow: mirrors office_node/triage.py (STATES, MOVES).
export const TRIAGE_STATES = ["new", "in_review", "disseminated", "closed"];
export const TRIAGE_MOVES = {
  new: ["in_review", "disseminated", "closed"],
  in_review: ["new", "disseminated", "closed"],
  disseminated: ["in_review", "closed"],
  closed: ["in_review"],
};
const TRIAGE_WORDS = { new: N_("New"), in_review: N_("In review"), disseminated: N_("Disseminated"), closed: N_("Closed") };
const USER_ROLES = ["officer", "supervisor", "admin"];

// Admiralty grading, as officers know it.
export const SOURCE_RELIABILITY = {
  A: N_("Completely reliable"), B: N_("Usually reliable"), C: N_("Fairly reliable"),
  D: N_("Not usually reliable"), E: N_("Unreliable"), F: N_("Reliability cannot be judged"),
};
export const INFORMATION_CREDIBILITY = {
  1: N_("Confirmed by other sources"), 2: N_("Probably true"), 3: N_("Possibly true"),
  4: N_("Doubtful"), 5: N_("Improbable"), 6: N_("Truth cannot be judged"),
};
// The words shown for the vocabulary's codes (the codes themselves travel on the wire).
const KIND_WORDS = {
  lookout: N_("lookout"), alert: N_("alert"), incident: N_("incident"),
  request_for_information: N_("request for information"), reply: N_("reply"),
  strategic_intelligence: N_("strategic intelligence"),
};
const ENTITY_WORDS = {
  person: N_("person"), document: N_("document"), vehicle: N_("vehicle"), vessel: N_("vessel"), phone: N_("phone"),
  organisation: N_("organisation"), location: N_("location"),
};
const CHOICE_WORDS = {
  passport: N_("passport"), id_card: N_("ID card"), visa: N_("visa"), travel_document: N_("travel document"),
  driving_licence: N_("driving licence"), other: N_("other"), stolen: N_("stolen"), lost: N_("lost"),
  forged: N_("forged"), fraudulent: N_("fraudulent"), revoked: N_("revoked"), valid: N_("valid"),
  F: N_("female"), M: N_("male"), X: N_("unspecified"),
};
const FIELD_WORDS = {
  name: N_("name"), aliases: N_("aliases"), dob: N_("date of birth"), nationality: N_("nationality"), sex: N_("sex"),
  doc_type: N_("document type"), number: N_("number"), country: N_("country"), status: N_("status"),
  expiry: N_("expiry"), holder: N_("holder"), plate: N_("plate"), make: N_("make"), model: N_("model"),
  colour: N_("colour"), vin: N_("VIN"), imo: N_("IMO number"), mmsi: N_("MMSI"), flag: N_("flag"),
  lat: N_("latitude"), lon: N_("longitude"), note: N_("note"),
};
const LINK_WORDS = {
  connected: N_("connected"), disconnected: N_("disconnected"), stalled: N_("stalled: the server does not answer"),
  credentials_refused: N_("credentials refused: ask the operator"),
};
const RECEIPT_WORDS = {
  queued: N_("queued"), sent: N_("sent"), delivered: N_("delivered"), read: N_("read"), acknowledged: N_("acknowledged"),
  // A feed copy waiting to be re-sealed under the feed's new epoch, or one that cannot go
  // (this office may no longer post there): the node's reason goes beside it.
  held: N_("held"), failed: N_("failed"),
};
/** The word for a code of the vocabulary in the officer's language (the code if unknown). */
function word(words, code) {
  return Object.hasOwn(words, code) ? _(words[code]) : String(code ?? "");
}

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
  imo: N_("7 digits"), mmsi: N_("9 digits"), number: "", lat: "16.54", lon: "104.72", aliases: N_("comma-separated"),
};

// The border check: what an officer at the counter checks, and the fields the form asks for
// (names and kinds from ENTITY_FIELDS; the node's index keys on these). CHECK_KEY is the
// field that must be filled, and takes the focus so the officer can type straight away.
export const CHECK_FIELDS = {
  document: ["doc_type", "number", "country"],
  person: ["name", "dob", "nationality"],
  vehicle: ["plate", "country"],
  phone: ["number", "country"],
};
const CHECK_KEY = { document: "number", person: "name", vehicle: "plate", phone: "number" };
const CHECK_TYPE_LABELS = { document: N_("Document"), person: N_("Person"), vehicle: N_("Vehicle"), phone: N_("Phone") };
const CHECK_KEY_WORDS = {
  document: N_("Enter the document number to check."), person: N_("Enter the name to check."),
  vehicle: N_("Enter the plate to check."), phone: N_("Enter the phone number to check."),
};
const CHECK_FIELD_LABELS = {
  doc_type: N_("Type"), number: N_("Number"), country: N_("Country"), name: N_("Name"), dob: N_("Date of birth"),
  nationality: N_("Nationality"), plate: N_("Plate"),
};
const CHECK_HINTS = {
  "document.number": "P0847211", "person.name": N_("as written in the document"), "vehicle.plate": "70-1234",
  "phone.number": "020 5555 1234",
};
// A phone written without + is read in the numbering plan of this country (default: the office's own).
const CHECK_TITLES = {
  "phone.country": N_("Country of a number written without + (empty: this office's country)"),
};

// A hit's notice state in the officer's words (office_node/lookouts.py notice_decision).
const NOTICE_WORDS = {
  sent: N_("originator notified"),
  own: N_("our own lookout"),
  pending: N_("notice to the originator pending"),
  "withheld:not_releasable": N_("withheld: not releasable to their country"),
  "withheld:tlp": N_("withheld: its TLP (RED or AMBER+STRICT) does not allow telling them"),
};

export function noticeText(notice) {
  const n = String(notice ?? "");
  if (NOTICE_WORDS[n]) return _(NOTICE_WORDS[n]);
  if (n.startsWith("withheld:")) return _("withheld: {rule}", { rule: n.slice("withheld:".length).replace(/_/g, " ") });
  return n || _("unknown");
}

// ---- Language ---------------------------------------------------------------------------
// Every text a person reads goes through _() (or N_() where it is kept for later and passed
// through _() when shown): the English text is the key into the page's catalogue of the
// officer's language (office_node/locale/<lang>/LC_MESSAGES/page.po, served as JSON at
// /static/i18n/<lang>.json by office_node/i18n.py). {name} in a text is filled from values.
// The static texts of index.html and login.html are translated in place (translateStatic).

/** The languages of the page's catalogues, and what an officer may choose (a tag with -u-ca-
 * picks the calendar: Thai shows the Buddhist era by default, th-u-ca-gregory Gregorian years). */
export const CATALOGUES = ["en", "th", "lo", "km", "vi", "my"];
const i18n = { language: "en", messages: {}, timeFormat: null, dateFormat: null };

/** Mark a text for the catalogue without translating it yet (it is translated where shown). */
export function N_(text) { return text; }

function fill(text, values) {
  if (!values) return text;
  return text.replace(/\{([a-z_]+)\}/g, (all, key) => (Object.hasOwn(values, key) ? String(values[key]) : all));
}

/** ``text`` (English, as written in the page) in the officer's language, with {name}s filled. */
export function _(text, values = null) {
  const m = i18n.messages[text];
  const translated = typeof m === "string" && m ? m : Array.isArray(m) && m[0] ? m[0] : text;
  return fill(translated, values);
}

/** A text with a count: English has a singular and a plural; the region's other languages one form. */
export function _n(singular, plural, n, values = {}) {
  const m = i18n.messages[singular];
  const translated = Array.isArray(m) && m[0] ? m[0] : typeof m === "string" && m ? m : n === 1 ? singular : plural;
  return fill(translated, { n, ...values });
}

/** The first of the browser's languages the page has a catalogue for; English otherwise. */
export function browserLanguage(preferred = navigator.languages || [navigator.language]) {
  for (const tag of preferred) {
    const base = String(tag || "").toLowerCase().split("-")[0];
    if (CATALOGUES.includes(base)) return base;
  }
  return "en";
}

/** Load a language's catalogue and show the page in it. A failure keeps English. */
export async function setLanguage(tag) {
  const base = String(tag || "en").split("-")[0];
  let catalogue = { messages: {} };
  if (base !== "en" && CATALOGUES.includes(base)) {
    try {
      const response = await fetch(`/static/i18n/${encodeURIComponent(tag)}.json`, { credentials: "same-origin" });
      if (response.ok) catalogue = await response.json();
    } catch { /* English it is */ }
  }
  i18n.language = CATALOGUES.includes(base) ? tag : "en";
  i18n.messages = catalogue && typeof catalogue.messages === "object" ? catalogue.messages : {};
  i18n.timeFormat = null;
  i18n.dateFormat = null;
  document.documentElement.lang = CATALOGUES.includes(base) ? base : "en";
  translateStatic();
}

// The page's static texts, as written in the HTML: [node, text] and [element, attribute, text].
const staticTexts = [];
const TRANSLATED_ATTRIBUTES = ["placeholder", "title", "aria-label", "alt"];

function collectStatic() {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT);
  for (let node = walker.currentNode; node; node = walker.nextNode()) {
    if (node.nodeType === Node.ELEMENT_NODE) {
      for (const name of TRANSLATED_ATTRIBUTES) {
        const value = node.getAttribute(name);
        if (value && /\p{L}/u.test(value) && !node.closest("[translate=no]")) staticTexts.push([node, name, value]);
      }
    } else if (/\p{L}/u.test(node.data) && !node.parentElement.closest("[translate=no], script, style")) {
      staticTexts.push([node, null, node.data]);
    }
  }
  const title = document.title;
  staticTexts.push([null, "title", title]);
}

function translateStatic() {
  if (!staticTexts.length) collectStatic();
  for (const [node, attribute, text] of staticTexts) {
    if (node === null) { document.title = _(text); continue; }
    if (attribute) { node.setAttribute(attribute, _(text)); continue; }
    // Keep the spaces around the words: they separate the text from the controls beside it.
    const [, lead, words, trail] = /^(\s*)([\s\S]*?)(\s*)$/.exec(text);
    node.data = `${lead}${_(words.replace(/\s+/g, " "))}${trail}`;
  }
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

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element: attributes set one by one (no markup parsed); string children become text. */
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/**
 * ``fn`` run once, ``ms`` after the first of a burst of calls; calls meanwhile join that run.
 * (Not a trailing debounce: heartbeats of 50 offices never pause, and a timer restarted
 * by each one would never fire.)
 */
function coalesce(fn, ms) {
  let timer = null;
  const run = () => { timer = null; fn(); };
  const call = () => { if (!timer) timer = setTimeout(run, ms); };
  call.cancel = () => { if (timer) clearTimeout(timer); timer = null; };
  return call;
}

const pad2 = (n) => String(n).padStart(2, "0");

/** Local time in the officer's language: in English as YYYY-MM-DD HH:MM:SS (unambiguous
 * across the region's date conventions), in the others in the locale's own form (Thai:
 * the Buddhist era unless the officer chose Gregorian years). */
export function formatTime(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  if (i18n.language !== "en") {
    i18n.timeFormat = i18n.timeFormat || new Intl.DateTimeFormat(i18n.language, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    });
    return i18n.timeFormat.format(d);
  }
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** A duration in the largest two units that matter: "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
export function formatDuration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return _("{s} s", { s });
  const min = Math.floor(s / 60);
  if (min < 60) return _("{min} min", { min });
  const h = Math.floor(min / 60);
  if (h < 48) return min % 60 ? _("{h} h {min} min", { h, min: min % 60 }) : _("{h} h", { h });
  const d = Math.floor(h / 24);
  return h % 24 ? _("{d} d {h} h", { d, h: h % 24 }) : _("{d} d", { d });
}

/** Local date: YYYY-MM-DD in English, the locale's form in the other languages. */
export function formatDate(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  if (i18n.language !== "en") {
    i18n.dateFormat = i18n.dateFormat || new Intl.DateTimeFormat(i18n.language, { year: "numeric", month: "short", day: "numeric" });
    return i18n.dateFormat.format(d);
  }
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
}

function timeEl(ms) {
  const text = formatTime(ms);
  return el("time", typeof ms === "number" ? { datetime: new Date(ms).toISOString(), title: new Date(ms).toISOString() } : {}, text);
}

function cssToken(value) { return String(value).toLowerCase().replace(/[^a-z0-9]+/g, "-"); }

export function precedenceBadge(precedence) {
  const known = PRECEDENCES.includes(precedence);
  return el("span", { class: `badge prec prec-${known ? cssToken(precedence) : "unknown"}`, title: _("Precedence") },
    known ? precedence : String(precedence ?? "?"));
}

export function tlpBadge(tlp) {
  const known = TLP_LABELS.includes(tlp);
  // TLP 2.0 labels are written "TLP:AMBER+STRICT"; colour per FIRST's spec (app.css).
  return el("span", { class: `badge tlp tlp-${known ? cssToken(tlp) : "unknown"}`, title: _("Traffic Light Protocol 2.0") },
    `TLP:${known ? tlp : String(tlp ?? "?")}`);
}

function stateChip(stateName, flash = false) {
  const known = RECEIPT_STATES.includes(stateName);
  // A FLASH delivered or read by the machine is not yet acknowledged by a person: say so.
  const waiting = flash && (stateName === "delivered" || stateName === "read");
  const text = waiting ? `${word(RECEIPT_WORDS, stateName)}, ${_(FLASH_WORDS.notAcknowledged)}` : word(RECEIPT_WORDS, stateName ?? "?");
  return el("span", { class: `chip state-${known ? stateName : "unknown"}${waiting ? " flash-waiting" : ""}` }, text);
}

// Codes (office ids, countries, tags) have no spaces: commas or spaces separate them.
// Names may have spaces: a list of names splits only on the comma (or semicolon) its
// field states, so the alias "Somchai Jaidee" stays one alias.
const CODE_SEPARATORS = /[\s,;]+/;
export const NAME_SEPARATORS = /[,;]/;

export function splitList(text, { upper = false, separators = CODE_SEPARATORS } = {}) {
  const out = [];
  for (const part of String(text).split(separators)) {
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
  nats: null, // "connected" | "disconnected" (or stalled, credentials refused: down all the same), from /health
  checkSeq: 0, // answers to an older check (or one the officer has since edited) are dropped
  hits: [],
  hitsUnseen: 0,
  // The centre's views (only on a node whose /api/me role is "centre").
  centreTab: "triage", // "triage" | "feeds" | "network"
  triage: { filter: "", items: [], next: null, counts: {}, selected: null, item: null, bulletin: null, seq: 0 },
  network: null, // the last /api/network answer
  networkTimer: null,
  forwardOf: null, // the bulletin detail the forward dialog is about
  lastForward: null, // {of, id, text}: the line shown under that bulletin's actions
  files: [], // File objects to attach to the bulletin being composed
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
    throw new ApiError(0, "network", _("Cannot reach the office node. Check that it is running."));
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const e = data && data.error ? data.error : {};
    const error = new ApiError(response.status, e.code || `http_${response.status}`,
      e.message || _("The node answered {status} {text}", { status: response.status, text: response.statusText }),
      typeof e.field === "string" ? e.field : null);
    // A lapsed session anywhere sends the officer back to the login form, except for
    // the login request itself (its 401 means "wrong password").
    if (response.status === 401 && path !== "/login" && state.loggedIn) showLogin(_("Your session has ended. Sign in again."));
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
  resetCentre();
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
    err.textContent = _("Enter your username and password.");
    show(err, true);
    return;
  }
  try {
    const result = await api("POST", "/login", { username, password });
    state.csrf = result && result.csrf_token ? result.csrf_token : null;
    await boot();
  } catch (e) {
    err.textContent = e.status === 401 ? _("Wrong username or password.") : e.message;
    show(err, true);
  }
}

async function onLogout() {
  try { await api("POST", "/logout"); } catch (e) { /* the session is dropped locally anyway */ }
  showLogin(_("Signed out."));
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
  // The officer's saved language, else the browser's (set when the page loaded).
  const saved = me.user && typeof me.user.language === "string" ? me.user.language : null;
  if (saved && saved !== i18n.language) {
    await setLanguage(saved);
    fillStatic();
  }
  renderLanguageChoice(me.languages, saved);
  // The office id comes from /api/me; /health names it too, as a fallback.
  let health = null;
  if (!me.office) {
    try { health = await api("GET", "/health"); } catch (e) { health = null; }
  }
  me.office = me.office || (health && health.office) || "";
  me.role = me.role || (health && health.role) || "";
  state.office = me.office;
  renderCheckFields($("check-type").value); // the phone's default country is this office's

  const user = me.user || {};
  $("top-office").textContent = me.office || "";
  $("top-user").textContent = `${user.display_name || user.username || ""}${user.role ? ` (${word(ROLE_WORDS, user.role)})` : ""}`;
  $("st-office").textContent = me.office || "?";
  $("st-role").textContent = me.role ? word(ROLE_WORDS, me.role) : "";
  document.title = `BLO Bus · ${me.office || ""}`;
  show($("boot"), false);
  show($("login-view"), false);
  show($("app"), true);

  const centre = isCentre();
  for (const node of document.querySelectorAll(".centre-only")) show(node, centre);
  setView(state.view);
  if (state.view === "check") focusCheckKey();
  const loads = [loadDirectory(), loadFeeds(), loadList(), refreshHealth(), loadHits()];
  if (centre) loads.push(loadTriage(), loadNetwork());
  await Promise.all(loads);
  startEvents();
  state.healthTimer = setInterval(refreshHealth, 10000);
  // An office that falls silent sends nothing: only the clock shows it, so the network
  // view is read again now and then (one small JSON answer).
  if (centre) state.networkTimer = setInterval(loadNetwork, NETWORK_REFRESH_MS);
}

function stopBackground() {
  if (state.events) { state.events.close(); state.events = null; }
  if (state.eventsTimer) { clearTimeout(state.eventsTimer); state.eventsTimer = null; }
  if (state.healthTimer) { clearInterval(state.healthTimer); state.healthTimer = null; }
  if (state.networkTimer) { clearInterval(state.networkTimer); state.networkTimer = null; }
  for (const refresh of [refreshTriageSoon, refreshFeedsSoon, refreshNetworkSoon]) refresh.cancel();
}

/** This node is a coordination centre (its page shows the Centre view). */
function isCentre() { return Boolean(state.me) && state.me.role === "centre"; }

/** The signed-in user may forward and change feeds (supervisor or admin). */
function canSupervise() {
  const role = state.me && state.me.user ? state.me.user.role : null;
  return USER_ROLES.indexOf(role) >= USER_ROLES.indexOf("supervisor");
}

const SUPERVISOR_NEEDED = N_("Needs a supervisor or admin account: ask your supervisor.");
const ROLE_WORDS = { officer: N_("officer"), supervisor: N_("supervisor"), admin: N_("admin"), office: N_("office"), centre: N_("centre") };

/** The language chooser: the officer's saved choice, or the browser's language. */
function renderLanguageChoice(languages, saved) {
  const select = $("language");
  const list = Array.isArray(languages) ? languages : [];
  setChildren(select, el("option", { value: "" }, _("Browser's language")),
    list.map((l) => el("option", { value: String(l.tag), lang: String(l.tag).split("-")[0] }, String(l.name))));
  select.value = saved || "";
}

async function onLanguageChange() {
  const chosen = $("language").value || null;
  try {
    await api("POST", "/api/me", { language: chosen });
    // The whole page again, in the language now saved in the account.
    window.location.reload();
  } catch (e) {
    status(_("Could not save the language: {error}", { error: e.message }));
  }
}

// ---- Views ------------------------------------------------------------------------------

const VIEWS = ["check", "feed", "compose", "outbox", "centre"];
// The Centre view's sections; the address names the section (#triage, #feeds, #network).
const CENTRE_TABS = ["triage", "feeds", "network"];

/** The view named by the address (e.g. a counter workstation's bookmark of /#check). */
function viewFromHash() {
  const name = window.location.hash.slice(1);
  if (CENTRE_TABS.includes(name)) {
    state.centreTab = name;
    return "centre";
  }
  return VIEWS.includes(name) && name !== "centre" ? name : null;
}

function setView(view) {
  if (!VIEWS.includes(view) || (view === "centre" && !isCentre())) view = "feed";
  state.view = view;
  for (const name of VIEWS) show($(`view-${name}`), name === view);
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-pressed", String(tab.dataset.view === view));
  if (view === "outbox") loadOutbox();
  if (view === "check") { state.hitsUnseen = 0; renderHitsUnseen(); }
  if (view === "centre") setCentreTab(state.centreTab, { address: false });
  // The address names the view, so a reload (or a bookmark) comes back to it.
  const hash = view === "feed" ? "" : `#${view === "centre" ? state.centreTab : view}`;
  const target = view === "feed" ? `${window.location.pathname}${window.location.search}` : hash;
  if (window.location.hash !== hash) window.history.replaceState(null, "", target);
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
    status(_("Could not load bulletins: {error}", { error: e.message }));
  }
}

/** A forward's attribution from the API (whose words it is), or null. */
function attributionOf(a) {
  return a && typeof a === "object" && Object.prototype.hasOwnProperty.call(ATTRIBUTION_MARK, a.state) ? a : null;
}

/** The short mark a forward gets in the list, beside whose words it is. */
const ATTRIBUTION_MARK = {
  original_checked: (a) => _("forwarded by {centre}", { centre: a.forwarded_by }),
  original_not_checked: (a) => _("forward: {office}'s signature not checked yet", { office: a.original_sender }),
  redacted: (a) => _("redacted forward: {centre}'s own words", { centre: a.forwarded_by }),
  original_refused: () => _("forward: the original does not stand"),
};

function summaryItem(s) {
  const received = s.direction !== "sent";
  const shown = attributionOf(s.attribution);
  // A forward is listed under whose words it is: the office only when its signature was checked.
  const who = received ? String((shown ? shown.words_of : s.from) ?? "?") : _("Sent");
  const button = el("button", {
    type: "button",
    class: "item-button",
    onclick: () => openDetail(s.id),
  },
  el("span", { class: "item-meta" },
    precedenceBadge(s.precedence),
    tlpBadge(s.tlp),
    el("span", { class: `who ${received ? "" : "sent"}` }, who),
    shown ? el("span", { class: `attr-mark attr-${shown.state}` }, ATTRIBUTION_MARK[shown.state](shown)) : null,
    s.feed ? el("span", { class: "feed-name", title: _("Feed") }, `#${s.feed}`) : null,
    el("span", { class: "kind" }, word(KIND_WORDS, s.kind)),
    el("span", { class: "when" }, timeEl(received ? (s.received_at ?? s.created) : (s.sent_at ?? s.created)))),
  el("span", { class: "item-title" }, String(s.title ?? "")),
  s.snippet ? snippetLine(s.snippet) : null,
  Array.isArray(s.forwards) && s.forwards.length ? forwardsLine(s.forwards) : null);
  const li = el("li", { class: `item${s.read ? "" : " unread"}${s.id === state.selectedId ? " selected" : ""}` }, button);
  li.dataset.id = String(s.id);
  return li;
}

/** Under a search result: where the query matched, the match marked. */
function snippetLine(sn) {
  return el("span", { class: "snippet" }, String(sn.before ?? ""), el("mark", {}, String(sn.match ?? "")), String(sn.after ?? ""));
}

/** Under a search result that stands for an original and its forwards: who forwarded it where. */
function forwardsLine(forwards) {
  return el("span", { class: "forwards" }, forwards.map((f, i) => [i ? "; " : "",
    f.feed ? _("also forwarded by {centre} to #{feed}", { centre: String(f.by ?? "?"), feed: String(f.feed) })
      : _("also forwarded by {centre}", { centre: String(f.by ?? "?") })]));
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
    $("search-summary").textContent = _n("{n} result for “{q}”", "{n} results for “{q}”", state.items.length, { q });
    show($("search-heading"), true);
    show($("feed-controls"), false);
    renderList();
  } catch (e) {
    status(_("Search failed: {error}", { error: e.message }));
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
    pane.replaceChildren(el("p", { class: "error pad" }, _("Could not open the bulletin: {error}", { error: e.message })));
  }
}

function row(label, ...value) {
  return el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, ...value));
}

function gradingText(grading) {
  const g = String(grading ?? "");
  const src = SOURCE_RELIABILITY[g[0]];
  const inf = INFORMATION_CREDIBILITY[g[1]];
  return src && inf ? `${g} — ${_(src)}; ${_(inf)}` : g;
}

/** The signature section: this node's check of the sender's signature and, for a centre's
 * forward, separately, what could be checked of the original office's signature. */
function verificationBlock(v, pid = (name) => name) {
  if (!v) return el("div", { class: "sig sig-unknown", id: pid("signature") }, _("No signature record for this bulletin."));
  const ok = v.verified === true;
  const p = v.provenance && typeof v.provenance === "object" ? v.provenance : null;
  const signer = String(v.signer ?? "?");
  const own = el("div", { class: `sig ${ok ? "sig-ok" : "sig-bad"}`, id: pid("signature") },
    el("strong", {}, ok ? _("✔ Signature verified") : _("✘ Signature NOT verified")),
    p ? el("span", { class: "sig-whose" }, ` — ${_("{centre}, the forwarding centre", { centre: signer })}`) : null,
    el("table", { class: "kv" }, el("tbody", {},
      row(p ? _("Forwarded by") : _("Signer office"), signer),
      row(_("Key id"), el("code", { class: "key-id" }, String(v.key_id ?? "?"))),
      row(_("Verified"), ok ? _("yes") : _("no")),
      row(_("Signed / sent at"), timeEl(v.sent_at)))));
  return p ? [own, provenanceBlock(p, pid)] : own;
}

/** The original office's signature, as the forward carries it: checked, redacted (cannot
 * be checked) or not checked (its key is unknown here). Never drawn like the centre's. */
function provenanceBlock(p, pid) {
  const sender = String(p.original_sender ?? _("the original office"));
  const centre = String(p.forwarded_by ?? _("the centre"));
  const status = p.verified === true ? "ok" : p.redacted === true ? "redacted"
    : p.state === "original_refused" ? "refused" : "unchecked";
  // Only a checked signature makes the office the author; otherwise it is who the centre names.
  const headline = {
    ok: _("✔ Original signature of {office} checked", { office: sender }),
    refused: _("✘ The original this forward carries does not stand"),
    redacted: _("✘ Redacted: {centre}'s own words, not {office}'s (no signature of {office}'s to check)", { centre, office: sender }),
    unchecked: _("? {office}'s original signature NOT checked: {centre}'s word until it is", { centre, office: sender }),
  }[status];
  const fields = Array.isArray(p.redacted_fields) ? p.redacted_fields.map(String) : [];
  return el("div", { class: `provenance prov-${status}`, id: pid("provenance") },
    el("strong", {}, headline),
    el("p", { class: "prov-text" }, String(p.text ?? "")),
    el("table", { class: "kv" }, el("tbody", {},
      p.original_sender ? row(status === "ok" ? _("Original office") : _("Attributed by {centre} to", { centre }), String(p.original_sender)) : null,
      p.original_id ? row(status === "redacted" ? _("Cited bulletin") : _("Original id"), el("code", {}, String(p.original_id))) : null,
      p.original_sign_kid ? row(_("Original key id"), el("code", { class: "key-id" }, String(p.original_sign_kid))) : null,
      typeof p.original_sent_at === "number" ? row(_("Original sent at"), timeEl(p.original_sent_at)) : null,
      fields.length ? row(_("Redacted"), fields.join(", ")) : null,
      status !== "ok" && p.reason ? row(_("Reason"), String(p.reason)) : null)));
}

function receiptsTable(receipts, flash = false) {
  const list = Array.isArray(receipts) ? receipts.slice() : [];
  list.sort((a, b) => String(a.recipient).localeCompare(String(b.recipient)));
  if (list.length === 0) return el("p", { class: "muted" }, _("No receipts."));
  return el("table", { class: "receipts" },
    el("thead", {}, el("tr", {}, el("th", {}, _("Recipient")), el("th", {}, _("State")), el("th", {}, _("At")))),
    el("tbody", {}, list.map((r) => {
      const why = r.problem ? el("span", { class: "muted problem" }, ` ${String(r.problem)}`) : null;
      const tr = el("tr", {}, el("td", {}, String(r.recipient ?? "?")), el("td", {}, stateChip(r.state, flash), why), el("td", {}, timeEl(r.at)));
      tr.dataset.recipient = String(r.recipient);
      return tr;
    })));
}

/** An entity's fields as "key: value" spans (everything but its type). */
function entityParts(entity) {
  const parts = [];
  for (const [k, v] of Object.entries(entity && typeof entity === "object" ? entity : {})) {
    if (k === "type") continue;
    const shown = Array.isArray(v) ? v.join(", ") : String(v);
    parts.push(el("span", { class: "ef" }, el("span", { class: "ek" }, `${word(FIELD_WORDS, k)}: `),
      el("span", { class: "ev" }, ["doc_type", "status", "sex"].includes(k) ? word(CHOICE_WORDS, shown) : shown)));
  }
  return parts;
}

function entityTable(entities) {
  const list = Array.isArray(entities) ? entities : [];
  if (list.length === 0) return null;
  return el("section", { class: "entities-view" }, el("h3", {}, _("Entities ({n})", { n: list.length })),
    el("ul", { class: "entity-list" }, list.map((entity) =>
      el("li", {}, el("span", { class: "etype" }, word(ENTITY_WORDS, entity && entity.type)), ...entityParts(entity)))));
}

/**
 * A bulletin in full: header, handling, body, entities, signature (and provenance),
 * receipts. ``where`` is "feed" (the Feed view's pane, plain ids) or "triage" (the
 * centre's triage pane: ids prefixed "triage-", so both panes can hold one at once).
 */
function bulletinView(d, where) {
  const pid = where === "feed" ? (name) => name : (name) => `triage-${name}`;
  const b = (d && d.bulletin) || {};
  const received = d.direction !== "sent";
  const provenance = d.verification && d.verification.provenance && typeof d.verification.provenance === "object"
    ? d.verification.provenance : null;
  const shown = attributionOf(d.attribution);
  // A forward of a forward is refused (forward the original), so only originals offer it.
  const forwardable = isCentre() && received && !b.forwarded && !provenance;
  // The triage queue holds what this country's offices send the centre directly.
  const office = state.directory.find((o) => o.office === b.from);
  const queued = forwardable && !d.feed && Boolean(office) && office.role === "office" && office.country === String(state.office).slice(0, 2);
  const actions = el("div", { class: "actions" },
    received && !d.read ? el("button", { type: "button", id: pid("mark-read"), onclick: () => markRead(b.id) }, _("Mark read")) : null,
    received && d.read ? el("span", { class: "muted" }, _("Read")) : null,
    received && b.precedence === "FLASH" ? ackControl(d, pid) : null,
    el("button", { type: "button", id: pid("reply-button"), class: "primary", onclick: () => startReply(d) }, _("Reply")),
    forwardable ? el("button", {
      type: "button", id: pid("forward-button"), disabled: !canSupervise(),
      title: canSupervise() ? _("Forward to a feed, the original's signature kept (or redacted)") : _(SUPERVISOR_NEEDED),
      onclick: () => openForward(d),
    }, _("Forward…")) : null,
    queued && where === "feed" ? el("button", { type: "button", id: "triage-button", onclick: () => openTriage(b.id) }, _("Triage")) : null,
    forwardable && !canSupervise() ? el("span", { class: "muted small" }, _("Forwarding needs a supervisor.")) : null);

  return [
    el("header", { class: "detail-head" },
      el("div", { class: "badges" }, precedenceBadge(b.precedence), tlpBadge(b.tlp),
        el("span", { class: "kind" }, word(KIND_WORDS, b.kind))),
      el("h2", { id: pid("detail-title"), class: "detail-title" }, String(b.title ?? "")),
      shown ? el("p", { id: pid("attribution"), class: `attribution attr-${shown.state}` }, String(shown.text ?? "")) : null,
      actions,
      forwardResult(b)),
    el("table", { class: "kv" }, el("tbody", {},
      row(_("From"), String(b.from ?? "?")),
      shown ? row(_("Words of"), String(shown.words_of ?? "?")) : null,
      row(_("Direction"), received ? _("received") : _("sent")),
      d.feed ? row(_("Feed"), `#${d.feed}`) : null,
      row(_("Id"), el("code", {}, String(b.id ?? ""))),
      row(_("Releasable to"), (b.releasable_to || []).join(", ")),
      row(_("Grading"), gradingText(b.grading)),
      row(_("Created"), timeEl(b.created)),
      row(_("Sent"), timeEl(d.sent_at)),
      row(_("Received"), timeEl(d.received_at)),
      b.expires ? row(_("Expires"), timeEl(b.expires)) : null,
      b.in_reply_to ? row(_("In reply to"), el("button", { type: "button", class: "link", onclick: () => openDetail(b.in_reply_to) }, String(b.in_reply_to))) : null,
      b.tags && b.tags.length ? row(_("Tags"), b.tags.map((t) => el("span", { class: "tag" }, String(t)))) : null)),
    el("div", { class: "body-text", id: pid("detail-body") }, String(b.body ?? "")),
    entityTable(b.entities),
    attachmentsBlock(d, pid),
    el("section", {}, el("h3", {}, _("Signature")), verificationBlock(d.verification, pid)),
    el("section", {}, el("h3", {}, _("Receipts")), el("div", { id: pid("receipts") }, receiptsTable(d.receipts, b.precedence === "FLASH"))),
    escalationsBlock(d.escalations, pid),
  ];
}

/** A received FLASH: the Acknowledge button, or who acknowledged it here and when. */
function ackControl(d, pid) {
  const b = d.bulletin || {};
  if (d.acknowledged && typeof d.acknowledged === "object") {
    return el("span", { class: "acknowledged", id: pid("acknowledged") },
      `${FLASH_WORDS.acknowledgedBy(String(d.acknowledged.by ?? "?"))} `, timeEl(d.acknowledged.at));
  }
  return el("button", {
    type: "button", id: pid("ack-button"), class: "primary flash-ack", title: _(FLASH_WORDS.acknowledgeTitle),
    onclick: () => acknowledge(b.id),
  }, _(FLASH_WORDS.acknowledge));
}

/** A FLASH sent here that nobody acknowledged in time: which centres were told, when. */
function escalationsBlock(escalations, pid) {
  const list = Array.isArray(escalations) ? escalations : [];
  if (list.length === 0) return null;
  return el("section", { id: pid("escalations") }, el("h3", {}, _(FLASH_WORDS.escalations)),
    el("ul", {}, list.map((e) => el("li", {},
      `${String(e.centre ?? "?")} (${word(FLASH_WORDS.levels, e.level)}): ${(e.offices || []).map(String).join(", ")} `,
      timeEl(e.at)))));
}

async function acknowledge(id) {
  try {
    const answer = await api("POST", `/api/bulletins/${encodeURIComponent(id)}/ack`);
    if (state.detail && state.detail.bulletin && state.detail.bulletin.id === id) {
      state.detail.acknowledged = answer.acknowledged;
      state.detail.read = true;
      renderDetail();
    }
    markListRead(id);
  } catch (e) {
    status(`${_(FLASH_WORDS.failed)}: ${e.message}`);
  }
}

// -- attachments ---------------------------------------------------------------------------

function fileSize(n) {
  if (n >= 1048576) return `${(n / 1048576).toFixed(1)} MiB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
  return _n("{n} byte", "{n} bytes", n);
}

function setFiles(files) {
  state.files = files;
  const list = $("c-file-list");
  if (!list) return;
  setChildren(list, files.map((f, i) => el("li", { class: "file-item" },
    el("span", { class: "file-name" }, f.name), " ", el("span", { class: "muted small" }, fileSize(f.size)), " ",
    el("button", { type: "button", class: "link", onclick: () => setFiles(state.files.filter((unused, j) => j !== i)) }, _("Remove")))));
}

function initAttachments() {
  const input = $("c-files");
  const zone = $("drop-zone");
  input.addEventListener("change", () => { setFiles([...state.files, ...input.files]); input.value = ""; });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    setFiles([...state.files, ...event.dataTransfer.files]);
  });
}

// fetch() reports no upload progress; XMLHttpRequest does.
function postWithFiles(path, payload, files) {
  const form = new FormData();
  form.append("bulletin", new Blob([JSON.stringify(payload)], { type: "application/json" }));
  for (const f of files) form.append("file", f, f.name);
  const bar = $("c-progress");
  bar.value = 0;
  show(bar, true);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Accept", "application/json");
    if (state.csrf) xhr.setRequestHeader("X-CSRF-Token", state.csrf);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) bar.value = Math.round((100 * event.loaded) / event.total);
    });
    xhr.addEventListener("load", () => {
      show(bar, false);
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(data);
      const e = data && data.error ? data.error : {};
      reject(new ApiError(xhr.status, e.code || `http_${xhr.status}`, e.message || _("The node answered {status} {text}", { status: xhr.status, text: "" }).trim(), e.field || null));
    });
    xhr.addEventListener("error", () => {
      show(bar, false);
      reject(new ApiError(0, "network", _("Cannot reach the office node. Check that it is running.")));
    });
    xhr.send(form);
  });
}

function attachmentState(a) {
  if (a.state === "complete") return a.sniffed && a.sniffed !== a.media_type ? _("content is {type}", { type: a.sniffed }) : "";
  if (a.state === "queued") return _("arriving: {held} of {chunks} chunks", { held: a.held, chunks: a.chunks });
  return `${word(ATTACHMENT_WORDS, a.state)}: ${a.message || a.reason || ""}`;
}

const ATTACHMENT_WORDS = { refused: N_("refused"), corrupt: N_("corrupt") };

function openViewer(url, name) {
  setChildren($("image-viewer-body"), el("img", { src: url, alt: name, id: "image-viewer-img" }));
  $("image-viewer").showModal();
}

function attachmentsBlock(d, pid) {
  const items = d.attachments || [];
  if (!items.length) return null;
  const base = `/api/bulletins/${encodeURIComponent((d.bulletin || {}).id)}/attachments`;
  return el("section", { class: "attachments" },
    el("h3", {}, d.complete ? _("Attachments") : _("Attachments (not all here yet)")),
    el("ul", { class: "attachment-list", id: pid("attachments") }, items.map((a) => el("li", { class: `attachment ${cssToken(a.state)}` },
      a.image ? el("button", { type: "button", class: "thumb", title: _("View"), onclick: () => openViewer(`${base}/${a.n}/view`, a.name) },
        el("img", { src: `${base}/${a.n}/thumbnail`, alt: a.name, class: "thumbnail" })) : null,
      a.state === "complete"
        ? el("a", { href: `${base}/${a.n}`, download: a.name, class: "download" }, a.name)
        : el("span", { class: "file-name" }, a.name),
      " ", el("span", { class: "muted small" }, `${a.media_type}, ${fileSize(a.size)}`),
      " ", el("span", { class: "small attachment-state" }, attachmentState(a))))));
}

const refreshDetailSoon = coalesce(async () => {
  const id = state.detail && (state.detail.bulletin || {}).id;
  if (!id) return;
  try {
    const data = await api("GET", `/api/bulletins/${encodeURIComponent(id)}`);
    if (state.selectedId === id) { state.detail = data; renderDetail(); }
  } catch { /* the next event tries again */ }
}, 500);

function onLiveAttachment(d) {
  if (state.detail && (state.detail.bulletin || {}).id === d.id) refreshDetailSoon();
}

function renderDetail() {
  const pane = $("detail");
  setChildren(pane, bulletinView(state.detail, "feed"));
  pane.scrollTop = 0;
}

async function markRead(id) {
  try {
    await api("POST", `/api/bulletins/${encodeURIComponent(id)}/read`);
    if (state.detail && state.detail.bulletin && state.detail.bulletin.id === id) {
      state.detail.read = true;
      renderDetail();
    }
    const t = state.triage;
    if (t.bulletin && t.bulletin.bulletin && t.bulletin.bulletin.id === id) {
      t.bulletin.read = true;
      renderTriageDetail();
    }
    markListRead(id);
  } catch (e) {
    status(_("Could not mark read: {error}", { error: e.message }));
  }
}

// ---- Compose ----------------------------------------------------------------------------

/** Options for ``values``: each shown as ``names[v]`` or ``v — labels[v]`` (texts of the
 * catalogue) or as itself. Marked as filled, so a change of language can fill them again. */
function fillSelect(select, values, labels = null, names = null) {
  select.append(...values.map((v) => {
    const option = el("option", { value: v }, names ? word(names, v) : labels ? `${v} — ${_(labels[v])}` : v);
    option.dataset.filled = "1";
    return option;
  }));
}

/** The selects' options and the check form in the language now chosen. */
function fillStatic() {
  const refill = (id, ...args) => {
    const select = $(id);
    const chosen = select.value;
    for (const option of [...select.options]) if (option.dataset.filled) option.remove();
    fillSelect(select, ...args);
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  };
  refill("filter-precedence", PRECEDENCES);
  refill("filter-kind", KINDS, null, KIND_WORDS);
  refill("c-precedence", PRECEDENCES);
  refill("c-kind", KINDS, null, KIND_WORDS);
  refill("c-tlp", TLP_LABELS);
  refill("c-source", Object.keys(SOURCE_RELIABILITY), SOURCE_RELIABILITY);
  refill("c-information", Object.keys(INFORMATION_CREDIBILITY), INFORMATION_CREDIBILITY);
  refill("entity-type", Object.keys(ENTITY_FIELDS), null, ENTITY_WORDS);
  refill("check-type", Object.keys(CHECK_FIELDS), null, CHECK_TYPE_LABELS);
  renderCheckFields($("check-type").value);
}

async function loadDirectory() {
  try {
    const data = await api("GET", "/api/directory");
    state.directory = Array.isArray(data && data.offices) ? data.offices : [];
  } catch (e) {
    state.directory = [];
    status(_("Directory unavailable: {error}", { error: e.message }));
  }
  const box = $("to-offices");
  const offices = state.directory.filter((o) => !o.revoked && o.office !== state.office)
    .sort((a, b) => String(a.office).localeCompare(String(b.office)));
  box.replaceChildren(...offices.map((o) => el("label", { class: "check", title: String(o.name ?? "") },
    el("input", { type: "checkbox", value: String(o.office), class: "to-office", onchange: autoReleasable }),
    el("span", {}, String(o.office)), o.name ? el("span", { class: "muted" }, ` ${o.name}`) : null)));
  if (offices.length === 0) box.append(el("span", { class: "muted" }, _("No offices in the directory yet: type ids below.")));
  if (isCentre()) renderFeedCreateMembers();
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
    const chosen = select.value; // a reload (a live "feed" event) keeps the officer's choice
    select.replaceChildren(first, ...state.feeds.map((feed) => el("option", { value: String(feed.name) }, `#${feed.name}`)));
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  }
  if (isCentre()) renderFeeds();
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
  // A feed's members are recipients too: every one of their countries must be named.
  const feed = state.feeds.find((x) => x.name === $("to-feed").value);
  const members = feed && Array.isArray(feed.members) ? feed.members.map(String) : [];
  for (const id of [...selectedRecipients(), ...members]) {
    const c = id.slice(0, 2);
    if (/^[A-Z]{2}$/.test(c) && !countries.includes(c)) countries.push(c);
  }
  $("c-releasable").value = countries.join(", ");
}

function entityInput(field) {
  const id = `ent-${Math.random().toString(36).slice(2)}`;
  let input;
  if (field.kind === "choice") {
    input = el("select", { id }, el("option", { value: "" }, field.required ? _("— choose —") : "—"),
      field.choices.map((c) => el("option", { value: c }, word(CHOICE_WORDS, c))));
  } else {
    input = el("input", {
      id,
      type: field.kind === "number" ? "number" : "text",
      step: field.kind === "number" ? "any" : null,
      maxlength: field.kind === "country" ? 2 : 200,
      placeholder: FIELD_HINTS[field.name] ? _(FIELD_HINTS[field.name]) : null,
      autocomplete: "off",
      spellcheck: "false",
    });
  }
  input.dataset.field = field.name;
  input.dataset.kind = field.kind;
  if (field.required) input.required = true;
  return el("label", { class: "ent-field", for: id }, `${word(FIELD_WORDS, field.name)}${field.required ? " *" : ""}`, input);
}

function addEntityRow(type) {
  const fields = ENTITY_FIELDS[type];
  if (!fields) return;
  const rowEl = el("div", { class: "entity-row" },
    el("span", { class: "etype" }, word(ENTITY_WORDS, type)),
    fields.map(entityInput),
    entityInput(f("note", "text")),
    el("button", { type: "button", class: "remove", title: _("Remove this entity"), "aria-label": _("Remove this entity"), onclick: () => rowEl.remove() }, "✕"));
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
      if (kind === "list") entity[input.dataset.field] = splitList(raw, { separators: NAME_SEPARATORS });
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
    if (payload.to.length === 0 && !payload.feed) return composeError(_("Choose at least one office or a feed."));
  }
  if (!source || !information) return composeError(_("Grade the source (A-F) and the information (1-6)."));
  if (!payload.title) return composeError(_("The title must not be empty."));
  if (payload.releasable_to.length === 0) return composeError(_("Name at least one country the bulletin may reach."));

  const send = $("compose-send");
  send.disabled = true;
  try {
    const path = replyTo ? `/api/bulletins/${encodeURIComponent(replyTo.id)}/reply` : "/api/bulletins";
    if (state.files.length && replyTo) throw new ApiError(400, "invalid", _("Attach files to a new bulletin, not a reply."));
    const result = state.files.length ? await postWithFiles(path, payload, state.files) : await api("POST", path, payload);
    const out = $("compose-result");
    out.replaceChildren(`${_("Queued for delivery: {title}", { title: payload.title })} `,
      el("button", { type: "button", class: "link", onclick: () => openDetail(result.id) }, String(result.id)),
      ` (${word(RECEIPT_WORDS, result.state ?? "queued")})`);
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
  setFiles([]);
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
  $("reply-text").textContent = _("Reply to {office}: {title}", { office: b.from ?? "?", title: b.title ?? "" });
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
        el("td", { class: "recips" }, (item.recipients || []).map((r) => recipientChip(r, item.precedence === "FLASH"))));
      tr.dataset.id = String(item.id);
      return tr;
    }));
    show($("outbox-empty"), items.length === 0);
  } catch (e) {
    status(_("Could not load the outbox: {error}", { error: e.message }));
  }
}

function recipientChip(r, flash = false) {
  const chip = el("span", { class: "recipient", title: r.problem ? String(r.problem) : r.at ? formatTime(r.at) : "" },
    el("span", { class: "rname" }, String(r.recipient ?? "?")), stateChip(r.state, flash));
  chip.dataset.recipient = String(r.recipient);
  return chip;
}

// ---- Border check -----------------------------------------------------------------------

function renderCheckFields(type) {
  const specs = ENTITY_FIELDS[type] || [];
  $("check-fields").replaceChildren(...(CHECK_FIELDS[type] || []).map((name) => {
    // A phone entity has no country field; the check's country is a country all the same.
    const spec = specs.find((s) => s.name === name) || f(name, name === "country" ? "country" : "text");
    const id = `check-${name}`;
    const input = spec.kind === "choice"
      ? el("select", { id }, spec.choices.map((c) => el("option", { value: c }, word(CHOICE_WORDS, c))))
      : el("input", {
        id,
        type: "text",
        maxlength: spec.kind === "country" ? 2 : 200,
        placeholder: type === "phone" && name === "country"
          ? String(state.office || "").slice(0, 2) || null
          : _(CHECK_HINTS[`${type}.${name}`] || FIELD_HINTS[name] || "") || null,
        title: CHECK_TITLES[`${type}.${name}`] ? _(CHECK_TITLES[`${type}.${name}`]) : null,
        autocomplete: "off",
        autocapitalize: spec.kind === "country" ? "characters" : null,
        spellcheck: "false",
      });
    input.dataset.field = name;
    input.dataset.kind = spec.kind;
    const key = name === CHECK_KEY[type];
    return el("label", { class: `check-field check-${spec.kind}${key ? " check-key" : ""}` },
      `${CHECK_FIELD_LABELS[name] ? _(CHECK_FIELD_LABELS[name]) : name}${key ? " *" : ""}`, input);
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
    checkError(_(CHECK_KEY_WORDS[query.type] || N_("Enter the value to check.")), CHECK_KEY[query.type]);
    focusCheckKey();
    return;
  }
  const seq = state.checkSeq;
  const button = $("check-submit");
  button.disabled = true;
  $("check-result").replaceChildren(el("p", { class: "muted" }, _("Checking…")));
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
    checkError(_("Not checked: {error}", { error: e.message }), e.field);
  } finally {
    if (seq === state.checkSeq) button.disabled = false;
  }
}

function checkedThing(query) {
  if (query.type === "document") return query.doc_type ? word(CHOICE_WORDS, query.doc_type) : _("document");
  if (query.type === "phone") return _("phone number");
  return word(ENTITY_WORDS, query.type ?? "entity");
}

function strengthChip(strength, keyKind) {
  const known = strength === "exact" || strength === "similar";
  return el("span", {
    class: `chip strength strength-${known ? strength : "unknown"}`,
    title: strength === "similar" ? _("A similar spelling of the name (romanisation-tolerant): compare the other details")
      : keyKind ? _("Matched on: {key}", { key: keyKind }) : null,
  }, strength === "exact" ? _("exact match") : strength === "similar" ? _("similar spelling") : String(strength ?? "?"));
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
      el("span", { class: "kind" }, word(KIND_WORDS, m.kind)),
      strengthChip(m.strength, m.key_kind),
      el("span", { class: "who", title: _("Sender") }, `${m.sender ?? "?"}${m.direction === "sent" ? ` ${_("(sent from here)")}` : ""}`),
      el("span", { class: "when" }, timeEl(m.created))),
    bulletinLink(m.title, m.bulletin_id, "match-title"),
    el("div", { class: "match-grading" }, el("span", { class: "ek" }, `${_("Grading")}: `), gradingText(m.grading)),
    entity ? el("div", { class: "match-entity" }, el("span", { class: "etype" }, word(ENTITY_WORDS, entity.type)), ...entityParts(entity)) : null,
    typeof m.expires === "number" ? el("div", { class: "match-expires muted" }, `${_("Expires")} `, timeEl(m.expires)) : null);
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
    el("span", { class: "verdict-word" }, flagged ? _("FLAGGED") : _("CLEAR")),
    el("span", { class: "verdict-detail" }, !flagged ? _("No active lookout held on this node names this {thing}", { thing })
      : n ? _n("{n} active lookout on this node names this {thing}", "{n} active lookouts on this node name this {thing}", n, { thing })
        : _("The node flags this {thing} but listed no lookout: ask your supervisor", { thing })));
  const provenance = el("p", { id: "check-provenance", class: "check-provenance" },
    el("span", { class: "etype" }, word(ENTITY_WORDS, query.type)), ...entityParts(query),
    el("br"),
    el("span", { class: "muted" }, `${_("Checked at")} `, timeEl(result.checked_at),
      ` ${_("on {office}'s local copy of the bulletins (works while the link is down).", { office: state.office || _("this node") })}`));
  const linkDown = state.nats === "disconnected"
    ? el("p", { class: "warn" }, _("The link to the bus is down: lookouts sent since it dropped have not reached this node yet. Check again when it is back."))
    : null;
  const section = (heading, note, items, id, cls) => el("section", { class: "check-section" },
    el("h2", {}, heading), note ? el("p", { class: "muted note" }, note) : null,
    el("ul", { id, class: `match-list ${cls}` }, items.map(matchItem)));
  setChildren($("check-result"), verdict, provenance, linkDown,
    n ? section(_("Active lookouts ({n})", { n }), null, matches, "check-matches", "matches") : null,
    mentions.length
      ? section(_("Also mentioned in ({n})", { n: mentions.length }), _("Not lookouts: other bulletins (incidents, replies, intelligence) that name it."),
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
    status(_("Could not load lookout hits: {error}", { error: e.message }));
  }
}

function noticeLine(h) {
  const notice = String(h.notice ?? "");
  const kind = notice.startsWith("withheld:") ? "withheld" : cssToken(notice || "unknown");
  const title = kind === "withheld"
    ? _("Not sent automatically: decide whether to tell {office} (reply to the lookout)", { office: h.lookout_sender ?? _("the originator") })
    : null;
  return el("div", { class: `notice notice-${kind}`, title },
    el("span", { class: "ek" }, `${_("Notice")}: `),
    el("span", {}, el("span", { class: "notice-text" }, noticeText(notice)),
      notice === "sent" && typeof h.notice_id === "string"
        ? [" ", el("button", { type: "button", class: "link", onclick: () => openDetail(h.notice_id) }, _("open notice"))] : null));
}

function hitItem(h) {
  const li = el("li", { class: "hit" },
    el("div", { class: "hit-meta" },
      h.precedence ? precedenceBadge(h.precedence) : null,
      strengthChip(h.strength, h.key_kind),
      el("span", { class: "when" }, timeEl(h.at))),
    el("div", { class: "hit-line" }, el("span", { class: "ek" }, `${_("Lookout")}: `),
      bulletinLink(h.lookout_title, h.lookout_id, "hit-lookout"),
      el("span", { class: "who", title: _("Lookout from") }, ` ${h.lookout_sender ?? "?"}`)),
    el("div", { class: "hit-line" }, el("span", { class: "ek" }, `${_("Named in")}: `),
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
  const similar = h.strength === "similar" ? ` ${_("(similar spelling)")}` : "";
  banner("hit", `${_("HIT on lookout “{lookout}”", { lookout: h.lookout_title ?? h.lookout_id })}${similar}: ${h.bulletin_title ?? h.bulletin_id}`, h.bulletin_id);
}

// ---- Centre: triage, forwarding, feeds, network -------------------------------------------

// How often the network view is read again: a silent office sends no event to say so.
const NETWORK_REFRESH_MS = 20000;
// Live events only say what changed, and come in bursts (a feed change gives a "feed"
// event per epoch and key; every office's heartbeat is one): one reload per burst, so a
// busy centre reads each view at most every so often, never once per event.
const loadSeq = { triage: 0, network: 0 };
const refreshTriageSoon = coalesce(() => { loadTriage(); reloadTriageItem(); }, 300);
const refreshFeedsSoon = coalesce(() => loadFeeds(), 400);
const refreshNetworkSoon = coalesce(() => loadNetwork(), 2000);

function setCentreTab(tab, { address = true } = {}) {
  if (!CENTRE_TABS.includes(tab)) tab = "triage";
  state.centreTab = tab;
  for (const name of CENTRE_TABS) show($(`centre-${name}`), name === tab);
  for (const button of document.querySelectorAll(".subtab")) {
    button.setAttribute("aria-pressed", String(button.dataset.centre === tab));
  }
  if (tab === "network") loadNetwork();
  if (address && state.view === "centre" && window.location.hash !== `#${tab}`) {
    window.history.replaceState(null, "", `#${tab}`);
  }
}

/** Signed out: nothing of the last analyst's queue, notes or dialogs stays on screen. */
function resetCentre() {
  state.triage = { filter: "", items: [], counts: {}, selected: null, item: null, bulletin: null, seq: 0 };
  state.network = null;
  state.forwardOf = null;
  state.lastForward = null;
  const dialog = $("forward-dialog");
  if (dialog.open) dialog.close();
  dialog.replaceChildren();
  $("triage-list").replaceChildren();
  setChildren($("triage-detail"), el("p", { class: "muted pad" }, _("Select a bulletin to triage it.")));
  $("feeds-body").replaceChildren();
  $("network-body").replaceChildren();
  for (const id of ["triage-new", "network-alert"]) show($(id), false);
  for (const node of document.querySelectorAll(".centre-only")) show(node, false);
}

function triageChip(stateName, id = null) {
  const known = TRIAGE_STATES.includes(stateName);
  return el("span", { class: `chip triage-${known ? cssToken(stateName) : "unknown"}`, id },
    known ? _(TRIAGE_WORDS[stateName]) : String(stateName ?? "?"));
}

// -- triage queue --

/** The first page of the queue, or with ``older`` the page after those shown. A refresh
 * (live event, button) reads as many as are shown, up to 200, so pages loaded with "Load
 * older" stay. */
const TRIAGE_PAGE = 100;
async function loadTriage(older = false) {
  if (!isCentre()) return;
  const t = state.triage;
  const seq = ++loadSeq.triage; // an older answer arriving late must not replace a newer one
  try {
    const shown = t.items.length > TRIAGE_PAGE ? { limit: String(Math.min(200, t.items.length)) } : {};
    const params = older && t.next ? { state: t.filter, cursor: t.next } : { state: t.filter, ...shown };
    const data = await api("GET", `/api/triage${query(params)}`);
    if (seq !== loadSeq.triage || t !== state.triage) return;
    const items = Array.isArray(data && data.items) ? data.items : [];
    t.items = older ? [...t.items, ...items.filter((i) => !t.items.some((o) => o.bulletin_id === i.bulletin_id))] : items;
    t.next = data && typeof data.next === "string" ? data.next : null;
    t.counts = data && data.counts && typeof data.counts === "object" ? data.counts : {};
    renderTriageList();
  } catch (e) {
    status(_("Could not load the triage queue: {error}", { error: e.message }));
  }
}

function renderTriageFilters() {
  const t = state.triage;
  const total = TRIAGE_STATES.reduce((n, s) => n + (Number(t.counts[s]) || 0), 0);
  const button = (value, label, count) => el("button", {
    type: "button", class: "filter-chip", id: `triage-filter-${value || "all"}`, "aria-pressed": String(t.filter === value),
    onclick: () => { t.filter = value; t.items = []; loadTriage(); },
  }, label, " ", el("span", { class: "count" }, String(count)));
  setChildren($("triage-filters"), button("", _("All"), total),
    TRIAGE_STATES.map((s) => button(s, _(TRIAGE_WORDS[s]), Number(t.counts[s]) || 0)));
  const fresh = Number(t.counts.new) || 0;
  const badge = $("triage-new");
  badge.textContent = fresh ? String(fresh) : "";
  show(badge, fresh > 0);
}

function triageRow(item) {
  const s = item.bulletin && typeof item.bulletin === "object" ? item.bulletin : null;
  const li = el("li", { class: `item triage-item${item.bulletin_id === state.triage.selected ? " selected" : ""}` },
    el("button", { type: "button", class: "item-button", onclick: () => selectTriage(item.bulletin_id) },
      el("span", { class: "item-meta" },
        s ? precedenceBadge(s.precedence) : null,
        s ? tlpBadge(s.tlp) : null,
        el("span", { class: "who" }, String(s ? s.from ?? "?" : "?")),
        s ? el("span", { class: "kind" }, word(KIND_WORDS, s.kind)) : null,
        triageChip(item.state),
        Number(item.notes) > 0 ? el("span", { class: "notes-count", title: _("Notes") }, `✎ ${item.notes}`) : null,
        item.assignee ? el("span", { class: "assignee", title: _("Assigned to") }, `@${item.assignee}`) : null,
        el("span", { class: "when" }, timeEl(item.created_at))),
      el("span", { class: "item-title" }, s ? String(s.title ?? "") : _("{id} (not stored here)", { id: item.bulletin_id }))));
  li.dataset.id = String(item.bulletin_id);
  li.dataset.state = String(item.state);
  return li;
}

function renderTriageList() {
  const t = state.triage;
  renderTriageFilters();
  $("triage-list").replaceChildren(...t.items.map(triageRow));
  const empty = $("triage-empty");
  empty.textContent = t.filter ? _("Nothing in “{state}”.", { state: TRIAGE_WORDS[t.filter] ? _(TRIAGE_WORDS[t.filter]) : t.filter })
    : _("The queue is empty: bulletins this country's offices send the centre arrive here.");
  show(empty, t.items.length === 0);
  show($("triage-more"), Boolean(t.next));
}

/** Open a bulletin in the triage view (from its detail in the Feed view). */
function openTriage(id) {
  setView("centre");
  setCentreTab("triage");
  selectTriage(id);
}

async function selectTriage(id) {
  const t = state.triage;
  t.selected = id;
  const seq = ++t.seq;
  for (const li of $("triage-list").children) li.classList.toggle("selected", li.dataset.id === id);
  setChildren($("triage-detail"), el("p", { class: "muted pad" }, _("Loading…")));
  const [item, bulletin] = await Promise.allSettled([
    api("GET", `/api/triage/${encodeURIComponent(id)}`),
    api("GET", `/api/bulletins/${encodeURIComponent(id)}`),
  ]);
  if (seq !== t.seq) return; // the analyst chose another one meanwhile
  t.item = item.status === "fulfilled" ? item.value : null;
  t.itemError = item.status === "rejected" ? item.reason.message : null;
  t.bulletin = bulletin.status === "fulfilled" ? bulletin.value : null;
  t.bulletinError = bulletin.status === "rejected" ? bulletin.reason.message : null;
  renderTriageDetail();
  $("triage-detail").scrollTop = 0;
}

/** A live change to the item on screen: its state and notes again (the bulletin is the same). */
async function reloadTriageItem() {
  const t = state.triage;
  if (!t.selected || !isCentre()) return;
  const id = t.selected;
  try {
    const item = await api("GET", `/api/triage/${encodeURIComponent(id)}`);
    if (t.selected !== id) return;
    t.item = item;
    renderTriageBox();
  } catch (e) { /* the next load shows it */ }
}

function renderTriageDetail() {
  const t = state.triage;
  const pane = $("triage-detail");
  setChildren(pane,
    el("div", { id: "triage-box-holder" }),
    t.bulletin ? bulletinView(t.bulletin, "triage")
      : el("p", { class: "error pad" }, _("Could not open the bulletin: {error}", { error: t.bulletinError ?? _("not stored here") })));
  renderTriageBox();
}

function renderTriageBox() {
  const t = state.triage;
  const holder = $("triage-box-holder");
  if (!holder) return;
  if (!t.item) {
    setChildren(holder, el("p", { class: "error" }, _("Not in the triage queue: {error}", { error: t.itemError ?? _("unknown") })));
    return;
  }
  // Whatever the analyst was typing survives a refresh caused by someone else's change.
  const typed = $("triage-note") ? $("triage-note").value : "";
  const item = t.item;
  const id = item.bulletin_id;
  const me = state.me && state.me.user ? state.me.user.username : null;
  const notes = Array.isArray(item.notes) ? item.notes : [];
  const withNote = (body) => {
    const note = $("triage-note").value.trim();
    return note ? { ...body, note } : body;
  };
  const box = el("section", { class: "triage-box", id: "triage-box", "aria-label": _("Triage") },
    el("div", { class: "triage-head" },
      el("strong", {}, _("Triage")), triageChip(item.state, "triage-state"),
      item.assignee ? el("span", { id: "triage-assignee" }, _("assigned to {user}", { user: item.assignee })) : el("span", { class: "muted" }, _("unassigned")),
      item.updated_by ? el("span", { class: "muted small" }, `${_("changed by {user}", { user: item.updated_by })} `, timeEl(item.updated_at)) : null),
    el("label", { class: "note-label" }, `${_("Note")} `,
      el("span", { class: "muted small" }, _("(sent with the next move, or on its own with Add note)")),
      el("textarea", { id: "triage-note", rows: "2", maxlength: "4000", value: typed })),
    el("div", { class: "triage-actions" },
      el("button", { type: "button", id: "triage-add-note", onclick: () => {
        const note = $("triage-note").value.trim();
        if (!note) { triageError(_("Write the note first.")); return; }
        postTriage(id, { note });
      } }, _("Add note")),
      el("span", { class: "muted small" }, _("Move to:")),
      (TRIAGE_MOVES[item.state] || []).map((to) => el("button", {
        type: "button", class: "triage-move", "data-state": to, onclick: () => postTriage(id, withNote({ state: to })),
      }, _(TRIAGE_WORDS[to]))),
      me && item.assignee !== me
        ? el("button", { type: "button", id: "triage-assign", onclick: () => postTriage(id, { assignee: me }) }, _("Assign to me")) : null),
    el("p", { id: "triage-error", class: "error", role: "alert", hidden: true }),
    notes.length
      ? el("ol", { class: "notes", id: "triage-notes" }, notes.map((n) => el("li", { class: "note" },
        el("div", { class: "note-meta" }, el("span", { class: "who" }, String(n.author ?? "?")), " ", timeEl(n.at)),
        el("div", { class: "note-text" }, String(n.text ?? "")))))
      : el("p", { class: "muted small", id: "triage-notes" }, _("No notes yet.")));
  setChildren(holder, box);
}

function triageError(message) {
  const err = $("triage-error");
  if (!err) return;
  err.textContent = message || "";
  show(err, Boolean(message));
}

async function postTriage(id, body) {
  triageError("");
  const buttons = [...document.querySelectorAll("#triage-box button")];
  for (const b of buttons) b.disabled = true;
  try {
    const item = await api("POST", `/api/triage/${encodeURIComponent(id)}`, body);
    const t = state.triage;
    // The row and the counts follow at once; the live "triage" event reloads them anyway.
    const listed = t.items.find((i) => i.bulletin_id === id);
    if (listed && item) {
      if (listed.state !== item.state && TRIAGE_STATES.includes(item.state)) {
        t.counts[listed.state] = Math.max(0, (Number(t.counts[listed.state]) || 0) - 1);
        t.counts[item.state] = (Number(t.counts[item.state]) || 0) + 1;
      }
      Object.assign(listed, {
        state: item.state, assignee: item.assignee, updated_at: item.updated_at, updated_by: item.updated_by,
        notes: Array.isArray(item.notes) ? item.notes.length : listed.notes,
      });
      renderTriageList();
    }
    if (t.selected === id) {
      t.item = item;
      if ($("triage-note")) $("triage-note").value = "";
      renderTriageBox();
    }
  } catch (e) {
    for (const b of buttons) b.disabled = false;
    triageError(e.message);
  }
}

// -- forwarding --

/** Fields of an entity that a forward may redact one by one (a required choice, such as a
 * document's type, cannot be blanked: redact the whole entity instead). */
function redactableFields(entity) {
  const specs = ENTITY_FIELDS[entity && entity.type] || [];
  return Object.keys(entity && typeof entity === "object" ? entity : {}).filter((name) => {
    if (name === "type") return false;
    const spec = specs.find((s) => s.name === name);
    return !(spec && spec.required && spec.kind === "choice");
  });
}

function shortValue(value) {
  const text = Array.isArray(value) ? value.join(", ") : String(value);
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

function redactBox(path, label, extra = {}) {
  return el("label", { class: "check redact-check" },
    el("input", { type: "checkbox", class: "redact", value: path, "data-path": path, onchange: onRedactChange, ...extra }),
    el("span", {}, label));
}

function onRedactChange() {
  // A whole entity redacted: its fields go with it (the node refuses "inside ... already").
  for (const whole of document.querySelectorAll("#forward-form .redact-entity > .redact-check .redact")) {
    for (const part of whole.closest(".redact-entity").querySelectorAll(".redact-fields .redact")) {
      part.disabled = whole.checked;
      if (whole.checked) part.checked = false;
    }
  }
  const any = document.querySelectorAll("#forward-form .redact:checked").length > 0;
  show($("forward-redact-note"), any);
}

function openForward(d) {
  if (!isCentre() || !canSupervise()) return;
  state.forwardOf = d;
  const b = d.bulletin || {};
  const feeds = state.feeds.filter((x) => x.owned_here || x.have_key);
  const entities = Array.isArray(b.entities) ? b.entities : [];
  const tags = Array.isArray(b.tags) ? b.tags.map(String) : [];
  const countries = Array.isArray(b.releasable_to) ? b.releasable_to.map(String) : [];
  const pIndex = PRECEDENCES.indexOf(b.precedence);
  const tIndex = TLP_LABELS.indexOf(b.tlp);
  // Rule 3: AMBER+STRICT and RED never go to a feed, so a forward cannot tighten to them.
  const feedable = TLP_LABELS.slice(0, TLP_LABELS.indexOf("AMBER+STRICT"));
  const members = el("p", { id: "forward-members", class: "muted small" });
  const showMembers = () => {
    const feed = state.feeds.find((x) => x.name === $("forward-feed").value);
    const list = feed && Array.isArray(feed.members) ? feed.members.map(String) : [];
    members.textContent = feed ? _("Members: {offices}", { offices: list.length ? list.join(", ") : _("none yet") }) : "";
  };
  const form = el("form", { id: "forward-form", class: "forward-form", novalidate: "", onsubmit: onForward },
    el("h2", { id: "forward-heading" }, _("Forward to a feed")),
    el("p", { class: "forward-what" }, precedenceBadge(b.precedence), " ", tlpBadge(b.tlp), " ",
      el("span", { class: "who" }, String(b.from ?? "?")), ": ", el("span", { class: "forward-title" }, String(b.title ?? ""))),
    feeds.length
      ? el("label", { class: "stack" }, _("Feed"), el("select", { id: "forward-feed", onchange: showMembers },
        feeds.map((x) => el("option", { value: String(x.name) }, `#${x.name}`))))
      : el("p", { class: "warn", id: "forward-no-feed" }, _("This centre has no feed yet: create one under Centre → Feeds.")),
    members,
    el("fieldset", { class: "redactions" },
      el("legend", {}, _("Redact")),
      el("div", { class: "checks" },
        redactBox("title", _("Title")),
        redactBox("body", _("Body")),
        typeof b.expires === "number" ? redactBox("expires", _("Expiry")) : null,
        tags.length ? redactBox("tags", _("Tags ({tags})", { tags: tags.join(", ") })) : null),
      entities.map((entity, i) => el("div", { class: "redact-entity" },
        redactBox(`entities[${i}]`, _("Entity {n}: {type} (whole)", { n: i + 1, type: word(ENTITY_WORDS, entity && entity.type) })),
        el("div", { class: "redact-fields" }, redactableFields(entity).map((name) =>
          redactBox(`entities[${i}].${name}`, `${word(FIELD_WORDS, name)}: ${shortValue(entity[name])}`))))),
      el("p", { id: "forward-redact-note", class: "warn", hidden: true },
        _("Members are shown a redacted forward as this centre's own words citing the original, not as the office's: the original signature cannot be checked."))),
    el("div", { class: "forward-handling" },
      el("label", { class: "stack" }, _("Precedence"), el("select", { id: "forward-precedence" },
        el("option", { value: "" }, _("Keep {value}", { value: b.precedence ?? "?" })),
        (pIndex > 0 ? PRECEDENCES.slice(0, pIndex) : []).map((p) => el("option", { value: p }, _("Raise to {value}", { value: p }))))),
      el("label", { class: "stack" }, "TLP", el("select", { id: "forward-tlp" },
        el("option", { value: "" }, _("Keep {value}", { value: b.tlp ?? "?" })),
        (tIndex >= 0 ? feedable.slice(tIndex + 1) : []).map((x) => el("option", { value: x }, _("Tighten to {value}", { value: x }))))),
      el("fieldset", { class: "forward-countries" }, el("legend", {}, _("Releasable to")),
        countries.map((c) => el("label", { class: "check" },
          el("input", { type: "checkbox", class: "forward-country", value: c, checked: true }), c))),
      el("label", { class: "stack forward-tags" }, _("Tags"), el("input", { id: "forward-tags", value: tags.join(", "), autocomplete: "off" }))),
    el("p", { id: "forward-error", class: "error", role: "alert", hidden: true }),
    el("div", { class: "actions" },
      el("button", { type: "submit", class: "primary", id: "forward-send", disabled: feeds.length === 0 }, _("Forward")),
      el("button", { type: "button", id: "forward-cancel", onclick: () => $("forward-dialog").close() }, _("Cancel"))));
  const dialog = $("forward-dialog");
  setChildren(dialog, form);
  if (feeds.length) showMembers();
  if (!dialog.open) dialog.showModal();
}

function forwardError(message) {
  const err = $("forward-error");
  err.textContent = message || "";
  show(err, Boolean(message));
}

async function onForward(event) {
  event.preventDefault();
  forwardError("");
  const d = state.forwardOf;
  const b = (d && d.bulletin) || {};
  const feed = $("forward-feed") ? $("forward-feed").value : "";
  if (!feed) return forwardError(_("Choose the feed to forward to."));
  const body = { feed, redact: [...document.querySelectorAll("#forward-form .redact:checked")].map((c) => c.value) };
  // Only what the analyst changed is sent; the node keeps the original's otherwise.
  if ($("forward-precedence").value) body.precedence = $("forward-precedence").value;
  if ($("forward-tlp").value) body.tlp = $("forward-tlp").value;
  const boxes = [...document.querySelectorAll("#forward-form .forward-country")];
  const kept = boxes.filter((c) => c.checked).map((c) => c.value);
  if (boxes.length && kept.length === 0) return forwardError(_("Keep at least one country it may reach."));
  if (kept.length !== boxes.length) body.releasable_to = kept;
  const tags = splitList($("forward-tags").value);
  const original = Array.isArray(b.tags) ? b.tags.map(String) : [];
  if (tags.join("\u0000") !== original.join("\u0000")) body.tags = tags;
  const send = $("forward-send");
  send.disabled = true;
  try {
    const result = await api("POST", `/api/bulletins/${encodeURIComponent(b.id)}/forward`, body);
    $("forward-dialog").close();
    const text = body.redact.length ? _("Forwarded to #{feed}, redacted ({fields}):", { feed, fields: body.redact.join(", ") })
      : _("Forwarded to #{feed}:", { feed });
    state.lastForward = { of: b.id, id: result && result.id, text: `${text} ` };
    status(_("Forwarded {id} to #{feed}", { id: b.id, feed }));
    if (state.detail && state.detail.bulletin && state.detail.bulletin.id === b.id) renderDetail();
    if (state.triage.bulletin && state.triage.bulletin.bulletin && state.triage.bulletin.bulletin.id === b.id) renderTriageDetail();
    refreshTriageSoon();
    refreshHealth();
  } catch (e) {
    forwardError(e.message);
  } finally {
    send.disabled = false;
  }
}

/** The line under a bulletin's actions after it was forwarded from this page. */
function forwardResult(b) {
  const last = state.lastForward;
  if (!last || last.of !== b.id) return null;
  return el("p", { class: "ok forward-result" }, last.text,
    typeof last.id === "string" ? el("button", { type: "button", class: "link", onclick: () => openDetail(last.id) }, last.id) : null);
}

// -- strategic intelligence --

/** The compose form, ready for a strategic intelligence bulletin to a feed. */
function startIntelligence(feedName = null) {
  resetCompose();
  show($("compose-result"), false);
  composeError("");
  $("c-kind").value = "strategic_intelligence";
  const select = $("to-feed");
  const owned = state.feeds.find((x) => x.owned_here);
  const feed = typeof feedName === "string" ? feedName : owned ? owned.name : "";
  if ([...select.options].some((o) => o.value === feed)) select.value = feed;
  autoReleasable();
  setView("compose");
  $("c-title").focus();
}

// -- feeds --

function feedsMessage(kind, message) {
  for (const k of ["error", "result"]) {
    const node = $(`feeds-${k}`);
    node.textContent = k === kind ? message : "";
    show(node, k === kind && Boolean(message));
  }
}

/** Offices whose membership this centre manages on ``feed``: every one on a feed it owns;
 * only its own country's on a joint feed another centre owns (asked of the owner). */
function managesMember(feed, office) {
  return feed.owned_here === true || String(office).slice(0, 2) === String(state.office).slice(0, 2);
}

function feedRow(feed) {
  const allowed = canSupervise();
  const changeable = allowed && (feed.owned_here === true || Boolean(feed.owner));
  const name = String(feed.name);
  const members = Array.isArray(feed.members) ? feed.members.map(String) : [];
  const writers = Array.isArray(feed.writers) ? feed.writers.map(String) : [];
  const ungranted = Array.isArray(feed.ungranted) ? feed.ungranted.map(String) : [];
  const mayPost = feed.owned_here === true || (writers.includes(String(state.office)) && feed.have_key === true);
  const addInput = el("input", {
    class: "feed-add-input", "aria-label": _("Office to add to {feed}", { feed: name }), placeholder: "TH-NKP", maxlength: "16",
    autocomplete: "off", spellcheck: "false", disabled: !changeable,
  });
  const add = () => {
    const offices = splitList(addInput.value, { upper: true });
    if (offices.length === 0) { feedsMessage("error", _("Type the office id to add.")); return; }
    changeMembers(name, { add: offices });
  };
  addInput.addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); add(); } });
  const tr = el("tr", {},
    el("td", {}, el("span", { class: "feed-name" }, `#${name}`),
      el("div", { class: "muted small" }, feed.owned_here ? _("owned here") : feed.owner ? _("owner {centre}", { centre: feed.owner }) : _("not seen yet")),
      feed.unpublished ? el("div", { class: "warn small" }, _("keys not published yet: waiting for the link")) : null,
      requestOutcome(feed)),
    el("td", {}, el("span", { class: "feed-epoch" }, String(feed.epoch ?? "—")),
      typeof feed.since === "number" ? el("div", { class: "muted small" }, `${_("since")} `, timeEl(feed.since)) : null),
    el("td", { class: "feed-members" }, members.length ? members.map((office) => el("span", {
      class: writers.includes(office) ? "member writer" : "member", "data-office": office,
      title: ungranted.includes(office) ? _("No grant of the current key yet: it gets one when it is back online") : null,
    },
      el("span", { class: "rname" }, office),
      ungranted.includes(office) ? el("span", { class: "member-pending", "aria-label": _("no grant yet") }, "…") : null,
      postToggle(feed, office, writers.includes(office)),
      changeable && managesMember(feed, office)
        ? el("button", {
          type: "button", class: "member-remove", title: _("Remove {office} from #{feed} (a new key; it reads nothing sent after)", { office, feed: name }),
          "aria-label": _("Remove {office}", { office }), onclick: () => changeMembers(name, { remove: [office] }),
        }, "✕")
        : null)) : el("span", { class: "muted" }, _("no members"))),
    el("td", {}, feed.have_key ? el("span", { class: "ok-text", title: _("This node holds the current epoch key") }, "✔")
      : el("span", { class: "bad-text", title: _("This node does not hold the current epoch key") }, "✘")),
    el("td", { class: "feed-actions" },
      el("span", { class: "feed-add" }, addInput,
        el("button", { type: "button", class: "feed-add-button", disabled: !changeable, onclick: add }, _("Add"))),
      feed.owned_here
        ? el("button", { type: "button", class: "feed-rotate", disabled: !allowed, title: _("A fresh key for the feed (a new epoch)"),
          onclick: () => rotateFeed(name) }, _("New key"))
        : null,
      // Offered only where this node can post: its own feed, or one whose owner lets it
      // post and whose current key it holds (else the bulletin could never be sealed).
      mayPost ? el("button", { type: "button", class: "feed-intel", onclick: () => startIntelligence(name) }, _("Write")) : null));
  tr.dataset.feed = name;
  return tr;
}

/** The latest membership request this centre sent the feed's owner: what became of each office. */
function requestOutcome(feed) {
  const entry = Array.isArray(feed.requests) ? feed.requests[0] : null;
  if (!entry || typeof entry !== "object") return null;
  const words = { added: _("added"), removed: _("removed"), already_member: _("already a member"), not_member: _("not a member"), refused: _("refused") };
  const outcomes = Array.isArray(entry.outcomes) ? entry.outcomes : [];
  return el("div", { class: "small feed-request", "data-request": String(entry.id) },
    el("span", { class: "muted" }, _("Last request to {centre}:", { centre: String(entry.owner ?? "?") })), " ",
    entry.answered_at == null ? el("span", { class: "muted" }, _("no answer yet"))
      : el("ul", { class: "feed-outcomes" }, outcomes.map((o) => el("li", {
        class: o.result === "refused" ? "bad-text" : null, "data-office": String(o.office), "data-result": String(o.result),
      }, `${o.office} (${o.change === "remove" ? "−" : "+"}): ${words[o.result] ?? String(o.result)}`, o.reason ? ` — ${o.reason}` : ""))));
}

/**
 * The post-rights mark of one member: on a feed owned here (and for a supervisor) a button
 * that gives or takes post rights (a new epoch); elsewhere a plain mark for writers.
 */
function postToggle(feed, office, writer) {
  const name = String(feed.name);
  if (feed.owned_here !== true || !canSupervise()) {
    return writer ? el("span", { class: "member-post", title: _("{office} may post to #{feed}", { office, feed: name }) }, "✎") : null;
  }
  const title = writer ? _("{office} may post to #{feed}: take its post rights away (a new key)", { office, feed: name })
    : _("{office} only reads #{feed}: let it post (a new key)", { office, feed: name });
  return el("button", {
    type: "button", class: writer ? "member-post on" : "member-post", title, "aria-label": title,
    "aria-pressed": writer ? "true" : "false",
    onclick: () => changeWriters(name, writer ? { remove: [office] } : { add: [office] }),
  }, "✎");
}

async function changeWriters(name, change) {
  feedsMessage("", "");
  try {
    const answer = await api("POST", `/api/feeds/${encodeURIComponent(name)}/writers`, change);
    await loadFeeds();
    const who = (change.add || change.remove || []).join(", ");
    const what = change.add ? _("{offices} may post", { offices: who }) : _("{offices} may no longer post", { offices: who });
    feedsMessage("result", _("#{feed}: {what}; epoch {epoch} (a fresh key).", { feed: name, what, epoch: answer && answer.epoch ? answer.epoch : "?" }));
  } catch (e) {
    feedsMessage("error", e.message);
  }
}

function renderFeeds() {
  $("feeds-body").replaceChildren(...state.feeds.map(feedRow));
  show($("feeds-empty"), state.feeds.length === 0);
  const allowed = canSupervise();
  const role = $("feeds-role");
  role.textContent = allowed ? "" : `${_("Creating feeds and changing members:")} ${_(SUPERVISOR_NEEDED)}`;
  show(role, !allowed);
  for (const node of $("feed-create-form").querySelectorAll("input, button")) node.disabled = !allowed;
}

/** The create form offers this country's offices from the directory. */
function renderFeedCreateMembers() {
  const own = String(state.office).slice(0, 2);
  const offices = state.directory.filter((o) => !o.revoked && o.role === "office" && o.country === own)
    .sort((a, b) => String(a.office).localeCompare(String(b.office)));
  const box = $("feed-members");
  box.replaceChildren(...offices.map((o) => el("label", { class: "check", title: String(o.name ?? "") },
    el("input", { type: "checkbox", class: "feed-member", value: String(o.office), disabled: !canSupervise() }),
    el("span", {}, String(o.office)), o.name ? el("span", { class: "muted" }, ` ${o.name}`) : null)));
  if (offices.length === 0) box.append(el("span", { class: "muted" }, _("No offices of this country in the directory: type ids below.")));
}

async function onCreateFeed(event) {
  event.preventDefault();
  feedsMessage("", "");
  const name = $("feed-name").value.trim();
  const members = [...document.querySelectorAll(".feed-member:checked")].map((c) => c.value);
  for (const id of splitList($("feed-extra").value, { upper: true })) if (!members.includes(id)) members.push(id);
  const scope = splitList($("feed-scope").value, { upper: true });
  if (!name) { feedsMessage("error", _("Name the feed (e.g. th-border).")); return; }
  const body = { name, members };
  if (scope.length) body.scope = scope;
  const button = $("feed-create");
  button.disabled = true;
  try {
    const feed = await api("POST", "/api/feeds", body);
    const list = feed && Array.isArray(feed.members) ? feed.members : members;
    $("feed-create-form").reset();
    await loadFeeds(); // the table first, so the message and the table agree
    feedsMessage("result", _("Created #{feed} (epoch {epoch}): its key goes to {offices}.", {
      feed: feed && feed.name ? feed.name : name, epoch: feed && feed.epoch ? feed.epoch : 1,
      offices: list.length ? list.join(", ") : _("no one yet"),
    }));
  } catch (e) {
    feedsMessage("error", e.message);
  } finally {
    button.disabled = !canSupervise();
  }
}

async function changeMembers(name, change) {
  feedsMessage("", "");
  try {
    const answer = await api("POST", `/api/feeds/${encodeURIComponent(name)}/members`, change);
    await loadFeeds();
    const what = [change.add && change.add.length ? _("add {offices}", { offices: change.add.join(", ") }) : null,
      change.remove && change.remove.length ? _("remove {offices}", { offices: change.remove.join(", ") }) : null].filter(Boolean).join("; ");
    if (answer && answer.requested_from) {
      feedsMessage("result", _("Requested from {centre}, which owns #{feed}: {what}. The members change when {centre} applies it.",
        { centre: answer.requested_from, feed: name, what }));
    } else {
      feedsMessage("result", _("#{feed}: {what} done; epoch {epoch} (a fresh key) for {offices}.", {
        feed: name, what, epoch: answer && answer.epoch ? answer.epoch : "?",
        offices: answer && Array.isArray(answer.members) ? answer.members.join(", ") || _("no one") : _("its members"),
      }));
    }
  } catch (e) {
    feedsMessage("error", e.message);
  }
}

async function rotateFeed(name) {
  feedsMessage("", "");
  try {
    const feed = await api("POST", `/api/feeds/${encodeURIComponent(name)}/rotate`);
    await loadFeeds();
    feedsMessage("result", _("#{feed}: a fresh key, epoch {epoch}.", { feed: name, epoch: feed && feed.epoch ? feed.epoch : "?" }));
  } catch (e) {
    feedsMessage("error", e.message);
  }
}

// -- network --

const NETWORK_STATE_WORDS = { online: N_("online"), silent: N_("SILENT"), never_seen: N_("never seen") };
/** The short name of a day of the week in the officer's language. */
function weekday(ms) {
  return new Intl.DateTimeFormat(i18n.language === "en" ? "en-GB" : i18n.language, { weekday: "short" }).format(new Date(ms));
}

async function loadNetwork() {
  if (!isCentre() || !state.loggedIn) return;
  const seq = ++loadSeq.network;
  try {
    const data = await api("GET", "/api/network");
    if (seq !== loadSeq.network || !isCentre()) return;
    state.network = data;
    show($("network-error"), false);
    renderNetwork();
  } catch (e) {
    const err = $("network-error");
    err.textContent = _("Could not load the network view: {error}", { error: e.message });
    show(err, true);
  }
}

function flagText(flag, o) {
  switch (flag) {
    case "outbox_lag": return _("outbox lag {duration}", { duration: formatDuration(o.outbox_lag_ms) });
    case "unacked_flash": return _("{n} FLASH unacknowledged", { n: o.unacked_flash });
    case "key_expiring": return _("key expires {date}", { date: formatDate(o.key_expires_at) });
    case "key_expired": return _("key expired");
    case "clock_ahead": return _("clock ahead");
    default: return String(flag).replace(/_/g, " ");
  }
}

/**
 * Bulletins per day for the last 7 days (oldest first) as inline SVG: a bar per day,
 * sent stacked on received, on the scale ``max`` (shared by every office, so bars compare).
 */
export function volumeChart(days, max) {
  const W = 13, GAP = 3, H = 28, LABEL = 10;
  const list = Array.isArray(days) ? days : [];
  const width = Math.max(1, list.length * (W + GAP) - GAP);
  const height = H + LABEL;
  const count = (v) => (Number.isFinite(Number(v)) && Number(v) > 0 ? Math.floor(Number(v)) : 0);
  const scale = Math.max(1, Number(max) || 0);
  let sentAll = 0, receivedAll = 0;
  const groups = list.map((d, i) => {
    const sent = count(d && d.sent), received = count(d && d.received);
    sentAll += sent; receivedAll += received;
    const total = sent + received;
    const h = total ? Math.max(1, Math.round((total / scale) * H)) : 0;
    const hs = total ? Math.round((h * sent) / total) : 0;
    const x = i * (W + GAP);
    const start = d && typeof d.start === "number" ? d.start : null;
    const day = start !== null ? `${weekday(start)} ${formatDate(start)}` : _("day {n}", { n: i + 1 });
    return svg("g", { class: "day" },
      svg("title", {}, _("{day}: {sent} sent, {received} received", { day, sent, received })),
      svg("rect", { class: "day-hit", x, y: 0, width: W, height: H }),
      svg("rect", { class: "bar-base", x, y: H - 1, width: W, height: 1 }),
      h - hs > 0 ? svg("rect", { class: "bar-received", x, y: H - h + hs, width: W, height: h - hs }) : null,
      hs > 0 ? svg("rect", { class: "bar-sent", x, y: H - h, width: W, height: hs }) : null,
      svg("text", { class: "day-label", x: x + W / 2, y: height - 1, "text-anchor": "middle" },
        start !== null ? weekday(start) : ""));
  });
  return svg("svg", {
    class: "volume", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": _("Last {n} days: {sent} sent, {received} received", { n: list.length, sent: sentAll, received: receivedAll }),
  }, groups);
}

function networkRow(o, max) {
  const flags = Array.isArray(o.flags) ? o.flags.map(String) : [];
  const known = Object.hasOwn(NETWORK_STATE_WORDS, o.state);
  const silentFor = o.state === "silent" && state.network
    ? _("No heartbeat for {duration} (flagged after {limit})", { duration: formatDuration(o.age_ms), limit: formatDuration(state.network.silent_after_ms) }) : null;
  const days = Array.isArray(o.days) ? o.days : [];
  const tr = el("tr", { class: `net-row net-${known ? cssToken(o.state) : "unknown"}${flags.length ? " flagged" : ""}` },
    el("td", {}, el("span", { class: "who" }, String(o.office ?? "?")),
      o.name && o.name !== o.office ? el("div", { class: "muted small" }, String(o.name)) : null),
    el("td", {}, el("span", { class: `chip net-state net-state-${known ? cssToken(o.state) : "unknown"}`, title: silentFor },
      known ? _(NETWORK_STATE_WORDS[o.state]) : String(o.state ?? "?")),
    flags.filter((x) => x !== "silent" && x !== "never_seen").map((x) =>
      el("span", { class: `chip flag flag-${cssToken(x)}`, "data-flag": x }, flagText(x, o)))),
    el("td", {}, typeof o.last_seen === "number"
      ? [timeEl(o.last_seen), el("div", { class: "muted small" }, _("{duration} ago", { duration: formatDuration(o.age_ms) }))]
      : el("span", { class: "muted" }, _("never"))),
    el("td", {}, o.outbox_depth === null || o.outbox_depth === undefined ? "—" : String(o.outbox_depth),
      typeof o.outbox_lag_ms === "number" && o.outbox_lag_ms > 0
        ? el("div", { class: "muted small" }, _("oldest {duration}", { duration: formatDuration(o.outbox_lag_ms) })) : null),
    el("td", { class: Number(o.unacked_flash) > 0 ? "bad-text" : "" },
      o.unacked_flash === null || o.unacked_flash === undefined ? "—" : String(o.unacked_flash)),
    el("td", { class: flags.includes("key_expired") || flags.includes("key_expiring") ? "bad-text" : "" },
      typeof o.key_expires_at === "number" ? formatDate(o.key_expires_at) : "—"),
    el("td", { class: "net-chart" }, days.length ? volumeChart(days, max) : el("span", { class: "muted small" }, _("no heartbeat yet"))));
  tr.dataset.office = String(o.office);
  tr.dataset.state = String(o.state);
  return tr;
}

function renderNetwork() {
  const n = state.network;
  if (!n) return;
  const offices = Array.isArray(n.offices) ? n.offices : [];
  let max = 1;
  for (const o of offices) {
    for (const d of Array.isArray(o.days) ? o.days : []) max = Math.max(max, (Number(d.sent) || 0) + (Number(d.received) || 0));
  }
  $("network-body").replaceChildren(...offices.map((o) => networkRow(o, max)));
  show($("network-empty"), offices.length === 0);
  const c = n.counts && typeof n.counts === "object" ? n.counts : {};
  $("network-heading").textContent = `${_("Network")}${n.country ? ` · ${n.country}` : ""}`;
  setChildren($("network-summary"),
    el("span", { class: "net-count" }, _("{n} online", { n: Number(c.online) || 0 })),
    el("span", { class: `net-count${Number(c.silent) ? " bad-text" : ""}` }, _("{n} silent", { n: Number(c.silent) || 0 })),
    el("span", { class: "net-count" }, _("{n} never seen", { n: Number(c.never_seen) || 0 })),
    el("span", { class: "muted" }, `${_("silent after {duration}; at", { duration: formatDuration(n.silent_after_ms) })} `, timeEl(n.at)));
  const silent = Number(c.silent) || 0;
  const badge = $("network-alert");
  badge.textContent = silent ? String(silent) : "";
  badge.title = silent ? _n("{n} office silent", "{n} offices silent", silent) : "";
  show(badge, silent > 0);
}

// ---- Health -----------------------------------------------------------------------------

async function refreshHealth() {
  try {
    const h = await api("GET", "/health");
    state.nats = h.nats === "connected" ? "connected" : "disconnected";
    const nats = $("st-nats");
    // Stalled: the server holds the link open and answers nothing (frozen): not "connected".
    nats.textContent = word(LINK_WORDS, Object.hasOwn(LINK_WORDS, h.nats) ? h.nats : "disconnected");
    nats.className = `dot ${h.nats === "connected" ? "up" : h.nats === "stalled" ? "stalled" : "down"}`;
    $("st-outbox").textContent = String(h.outbox_depth ?? "?");
  } catch (e) {
    const nats = $("st-nats");
    nats.textContent = _("node unreachable");
    nats.className = "dot down";
  }
}

// ---- Live events ------------------------------------------------------------------------

function setLive(up, text) {
  const live = $("st-live");
  live.textContent = text || (up ? _("connected") : _("reconnecting"));
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
      refreshFeedsSoon();
      if (isCentre()) { refreshTriageSoon(); refreshNetworkSoon(); }
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
  // The centre's views: each event only says what changed; the view concerned is read
  // again, once per burst.
  es.addEventListener("triage", () => { if (isCentre()) refreshTriageSoon(); });
  es.addEventListener("feed", () => refreshFeedsSoon());
  es.addEventListener("heartbeat", () => { if (isCentre()) refreshNetworkSoon(); });
  for (const kind of ["upload", "download", "attachment"]) {
    es.addEventListener(kind, (event) => { const d = parseEvent(event); if (d) onLiveAttachment(d); });
  }
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
    banner("flash", _("FLASH from {office}: {title}", { office: summary.from ?? "?", title: summary.title ?? "" }), summary.id);
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
  banner("escalation", String(data.message ?? _("Escalation")), typeof data.id === "string" ? data.id : null);
}

function banner(kind, message, id) {
  const box = el("div", { class: `banner banner-${kind}`, role: "alert" },
    el("span", { class: "banner-text" }, message),
    id ? el("button", { type: "button", onclick: () => { openDetail(id); box.remove(); } }, _("Open")) : null,
    el("button", { type: "button", class: "dismiss", title: _("Dismiss"), "aria-label": _("Dismiss"), onclick: () => box.remove() }, "✕"));
  const area = $("banners");
  area.prepend(box);
  // Keep the banner area small on a small screen: the oldest go first.
  while (area.children.length > 3) area.lastElementChild.remove();
}

// ---- Wiring -----------------------------------------------------------------------------

async function init() {
  await setLanguage(browserLanguage());
  // "— choose —" is static text of the page (index.html), translated with it.
  fillStatic();
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
  $("language").addEventListener("change", onLanguageChange);
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
  initAttachments();
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
  $("to-feed").addEventListener("change", autoReleasable);
  for (const button of document.querySelectorAll(".subtab")) {
    button.addEventListener("click", () => setCentreTab(button.dataset.centre));
  }
  $("write-intel").addEventListener("click", () => startIntelligence());
  $("triage-refresh").addEventListener("click", () => loadTriage());
  $("triage-more").addEventListener("click", () => loadTriage(true));
  $("feeds-refresh").addEventListener("click", loadFeeds);
  $("network-refresh").addEventListener("click", loadNetwork);
  $("feed-create-form").addEventListener("submit", onCreateFeed);
  boot();
}

// ---- The separate sign-in page (login.html) ------------------------------------------------

const LOGIN_REASONS = {
  bad_credentials: N_("Wrong username or password."),
  rate_limited: N_("Too many failed sign-ins. Wait a few minutes and try again."),
  cross_origin: N_("The sign-in came from another site's page. Open this node's own page and try again."),
  unauthenticated: N_("Sign in to continue."),
};

/**
 * login.html is a plain HTML form that works without JavaScript (the node answers a form
 * POST with a redirect). With JavaScript, the form posts JSON instead so the node's exact
 * message (e.g. how long to wait) is shown, then opens the page.
 */
async function initLoginPage() {
  await setLanguage(browserLanguage());
  const err = $("login-error");
  const reason = new URLSearchParams(window.location.search).get("error");
  if (reason) {
    err.textContent = LOGIN_REASONS[reason] ? _(LOGIN_REASONS[reason]) : _("Sign-in failed ({reason}).", { reason });
    show(err, true);
  }
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    show(err, false);
    try {
      await api("POST", "/login", { username: $("login-username").value.trim(), password: $("login-password").value });
      window.location.assign(`/${viewFromHash() ? window.location.hash : ""}`);
    } catch (e) {
      err.textContent = e.status === 401 ? _(LOGIN_REASONS.bad_credentials) : e.message;
      show(err, true);
    }
  });
}

if (document.body.dataset.page === "login") initLoginPage(); else init();
