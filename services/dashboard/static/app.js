// The ops page: sign-in, then the overview and the feed pushed by /v1/stream (server-sent events),
// and the review queue with its decisions. Text only ever goes in through textContent.
"use strict";

const STATE_ROWS = [
  ["pending_risk", "pending risk", "s1"],
  ["under_review", "under review", "s5"],
  ["pending_verification", "pending verification", "s6"],
  ["completed", "completed", "s2"],
  ["rejected", "rejected", "s4"],
  ["cancelled", "cancelled", "s3"],
  ["expired", "expired", "s3"],
];
const STAGE_CLASSES = ["s1", "s5", "s6", "s3", "s2"];
// What a request asks, and how a row of the per-kind table adds up its states.
const KIND_LABELS = { unbind: "unbind", pause: "pause auto-debit", switch: "switch account" };
const OPEN_STATES = ["pending_risk", "under_review", "pending_verification"];
const PER_HOUR_COLUMNS = ["requested", "assessed", "verification_issued", "verified", "completed", "rejected", "cancelled", "expired", "paused", "switched", "resumed"];
const FEED_LIMIT = 300;

const $ = (selector) => document.querySelector(selector);
const page = { source: null, reviewsTimer: null, eventTypesShown: false };

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

function duration(seconds) {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return seconds % 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds / 60} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

async function call(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options, headers: { "Content-Type": "application/json", ...(options.headers || {}) } });
  if (response.status === 401) {
    showSignIn();
    throw new Error("signed out");
  }
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(body && (body.detail || body.title) ? body.detail || body.title : `HTTP ${response.status}`);
  return body;
}

// ------------------------------------------------------------------ session

async function start() {
  const session = await (await fetch("/v1/session", { credentials: "same-origin" })).json();
  if (session.signed_in) showBoard(session);
  else showSignIn();
}

function showSignIn() {
  stopLive();
  clearInterval(page.reviewsTimer);
  $("#board").hidden = true;
  $("#sign-out").hidden = true;
  $("#who").textContent = "";
  $("#sign-in").hidden = false;
}

async function signIn(body) {
  $("#sign-in-error").textContent = "";
  try {
    const response = await fetch("/v1/session", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const session = await response.json();
    if (!response.ok) throw new Error(session.detail || session.title);
    $("#token").value = "";
    showBoard(session);
  } catch (error) {
    $("#sign-in-error").textContent = `Sign-in refused: ${error.message}`;
  }
}

async function signOut() {
  await fetch("/v1/session", { method: "DELETE", credentials: "same-origin" });
  showSignIn();
}

function showBoard(session) {
  $("#sign-in").hidden = true;
  $("#board").hidden = false;
  $("#sign-out").hidden = false;
  $("#who").textContent = session.subject;
  reloadFeed();
  startLive();
  loadReviews();
  clearInterval(page.reviewsTimer);
  page.reviewsTimer = setInterval(loadReviews, 5000);
}

// ------------------------------------------------------------------ live stream

function filterQuery() {
  const params = new URLSearchParams();
  const type = $("#filter-type").value;
  const requestId = $("#filter-request").value.trim();
  if (type) params.append("type", type);
  if (requestId) params.append("request_id", requestId);
  return params.toString();
}

function startLive() {
  stopLive();
  const query = filterQuery();
  const source = new EventSource(`/v1/stream${query ? `?${query}` : ""}`);
  page.source = source;
  source.addEventListener("open", () => setLive(true));
  source.addEventListener("overview", (message) => renderOverview(JSON.parse(message.data)));
  source.addEventListener("feed", (message) => addFeedItem(JSON.parse(message.data), true));
  source.addEventListener("error", async () => {
    setLive(false);
    // The stream ends when the session does: find out which it was.
    const session = await (await fetch("/v1/session", { credentials: "same-origin" })).json().catch(() => null);
    if (session && !session.signed_in) showSignIn();
  });
}

function stopLive() {
  if (page.source) page.source.close();
  page.source = null;
  setLive(false);
}

function setLive(on) {
  const pill = $("#live");
  pill.textContent = on ? "live" : "offline";
  pill.className = `pill ${on ? "on" : "off"}`;
}

// ------------------------------------------------------------------ feed

async function reloadFeed() {
  const query = filterQuery();
  try {
    const body = await call(`/v1/events?limit=${FEED_LIMIT}${query ? `&${query}` : ""}`);
    $("#feed-list").replaceChildren();
    body.items.reverse().forEach((item) => addFeedItem(item, false));
  } catch (error) {
    if (error.message !== "signed out") console.warn("feed", error.message);
  }
}

function addFeedItem(item, fresh) {
  const list = $("#feed-list");
  const li = document.createElement("li");
  li.dataset.requestId = item.request_id;
  li.dataset.type = item.type;
  li.dataset.seq = item.seq;
  const time = document.createElement("span");
  time.className = "mono";
  time.textContent = new Date(item.time).toLocaleTimeString();
  const type = document.createElement("span");
  type.className = `type ${item.type}`;
  type.textContent = item.type;
  // An event about a customer's device belongs to no request: nothing to filter by.
  const request = document.createElement(item.request_id ? "a" : "span");
  request.className = "request mono";
  if (item.request_id) {
    request.textContent = item.request_id.slice(0, 8);
    request.title = `request ${item.request_id} · binding ${item.binding_id} · ${item.user_id}`;
    request.addEventListener("click", () => {
      $("#filter-request").value = item.request_id;
      applyFilters();
    });
  } else {
    request.textContent = "–";
    request.title = `no request · ${item.user_id}`;
  }
  const summary = document.createElement("span");
  summary.textContent = `${item.user_id} · ${item.summary}`;
  li.append(time, type, request, summary);
  if (fresh) {
    li.classList.add("fresh");
    setTimeout(() => li.classList.remove("fresh"), 2000);
  }
  list.prepend(li);
  while (list.children.length > FEED_LIMIT) list.lastChild.remove();
  if (fresh && ["RiskAssessed", "ReviewDecided", "UnbindAppealed"].includes(item.type)) loadReviews();
}

function applyFilters() {
  reloadFeed();
  startLive();
}

// ------------------------------------------------------------------ overview

function renderOverview(overview) {
  $("#events-total").textContent = `${overview.events_total} events`;
  if (!page.eventTypesShown && overview.event_types) {
    const select = $("#filter-type");
    overview.event_types.forEach((name) => select.append(new Option(name, name)));
    page.eventTypesShown = true;
  }
  const now = overview.funnel.now;
  charts.drawBars($("#funnel-bars"), STATE_ROWS.map(([key, label, cls]) => ({ key, label, cls, value: now[key] || 0 })));
  $("#by-kind tbody").replaceChildren(
    ...Object.entries(overview.funnel.by_kind).map(([kind, states]) => {
      const tr = row(
        cell(KIND_LABELS[kind] || kind),
        cell(OPEN_STATES.reduce((sum, state) => sum + (states[state] || 0), 0), "num"),
        ...["completed", "rejected", "cancelled", "expired"].map((state) => cell(states[state], "num")),
      );
      tr.dataset.kind = kind;
      return tr;
    }),
  );

  const perHour = $("#per-hour tbody");
  perHour.replaceChildren(
    ...overview.funnel.per_hour
      .slice()
      .reverse()
      .map((h) => row(cell(new Date(h.hour).toISOString().slice(0, 13).replace("T", " ") + ":00"), ...PER_HOUR_COLUMNS.map((k) => cell(h[k], "num")))),
  );

  const windows = overview.latency.windows;
  $("#latency-table tbody").replaceChildren(
    ...Object.keys(windows["5m"]).map((stage) =>
      row(cell(stage), ...["5m", "60m"].flatMap((w) => [cell(windows[w][stage].count, "num"), ...["p50", "p95", "p99"].map((q) => cell(charts.formatNumber(windows[w][stage][q]), "num"))])),
    ),
  );
  const perMinute = overview.latency.per_minute_p95;
  charts.drawLineChart(
    $("#latency-chart"),
    $("#latency-legend"),
    perMinute.t,
    Object.keys(windows["5m"]).map((stage, i) => ({ name: `p95 ${stage}`, values: perMinute[stage], cls: STAGE_CLASSES[i % STAGE_CLASSES.length] })),
  );

  const series = overview.series;
  charts.drawLineChart($("#throughput-chart"), $("#throughput-legend"), series.t, [
    { name: "events", values: series.events, cls: "s1" },
    { name: "requests", values: series.requested, cls: "s5" },
    { name: "completed", values: series.completed, cls: "s2" },
  ]);
  charts.drawLineChart($("#outcomes-chart"), $("#outcomes-legend"), series.t, [
    { name: "completed", values: series.completed, cls: "s2" },
    { name: "rejected", values: series.rejected, cls: "s4" },
    { name: "cancelled", values: series.cancelled, cls: "s3" },
    { name: "expired", values: series.expired, cls: "s6" },
  ]);

  $("#stuck-count").textContent = overview.stuck.count;
  $("#stuck-count").parentElement.classList.toggle("alert", overview.stuck.count > 0);
  $("#stuck-after").textContent = duration(overview.stuck_after_seconds);
  $("#stuck tbody").replaceChildren(...overview.stuck.oldest.map((s) => row(cell(s.request_id, "mono"), cell(s.state), cell(s.last_event), cell(duration(s.waiting_seconds), "num"))));
  $("#dlq-count").textContent = overview.dlq.count;
  $("#dlq-count").parentElement.classList.toggle("alert", overview.dlq.count > 0);
  $("#dlq tbody").replaceChildren(...overview.dlq.recent.map((d) => row(cell(d.event_type), cell(d.consumer_group), cell(d.error))));
}

// ------------------------------------------------------------------ reviews

async function loadReviews() {
  if ($("#board").hidden) return;
  try {
    const body = await call("/v1/reviews");
    $("#reviews-error").textContent = "";
    renderReviews(body.items);
  } catch (error) {
    if (error.message !== "signed out") $("#reviews-error").textContent = error.message;
  }
}

// The reasons a reviewer may deny an unbind request for (shared.events.DenialReason); no machine denies one.
const DENIAL_REASONS = [
  ["identity_not_confirmed", "identity not confirmed"],
  ["customer_unreachable", "customer unreachable"],
  ["account_security_risk", "account security risk"],
  ["outstanding_repayment", "outstanding repayment"],
  ["lender_requirement", "lender requirement"],
  ["other", "other (say why in the message)"],
];

// Every decision takes a reason from risk's lists (GET /v1/reviews/reasons); the page chooses the
// denial's, and these for the rest.
const DEFAULT_REASONS = {
  approve: "identity_confirmed_by_call",
  "dispute.approve": "unauthorised_unbind",
  "dispute.deny": "no_error_found",
};

function textInput(className, placeholder, maxLength) {
  const input = document.createElement("input");
  input.type = "text";
  input.className = className;
  input.placeholder = placeholder;
  input.maxLength = maxLength;
  return input;
}

function button(className, label) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = label;
  return element;
}

function reasonSelect() {
  const select = document.createElement("select");
  select.className = "reason";
  select.setAttribute("aria-label", "reason to deny");
  const placeholder = new Option("reason to deny…", "");
  select.append(placeholder, ...DENIAL_REASONS.map(([code, label]) => new Option(label, code)));
  return select;
}

function renderReviews(items) {
  $("#review-count").textContent = items.length;
  $("#reviews-empty").hidden = items.length > 0;
  $("#reviews tbody").replaceChildren(
    ...items.map((review) => {
      const note = textInput("note", "internal note (ops only)", 500);
      const message = textInput("customer-message", "message to the customer (optional)", 500);
      // A dispute of a completed unbind is upheld or not: no reason from the list.
      const reason = review.origin === "dispute" ? null : reasonSelect();
      const approve = button("approve", review.origin === "dispute" ? "Uphold" : "Approve");
      const deny = button("deny", review.origin === "dispute" ? "Reject" : "Deny");
      const decide = (decision) => async () => {
        const body = { decision, note: note.value };
        if (message.value.trim()) body.customer_message = message.value.trim();
        body.reason = DEFAULT_REASONS[review.origin === "dispute" ? `dispute.${decision}` : decision];
        if (decision === "deny" && reason) {
          if (!reason.value) {
            $("#reviews-error").textContent = "Choose the reason to deny: the customer is told it.";
            return;
          }
          body.reason = reason.value;
        }
        approve.disabled = deny.disabled = true;
        try {
          // A decision needs the reviewer's claim on the case: take it (or renew it) first.
          const path = `/v1/reviews/${encodeURIComponent(review.id)}`;
          await call(`${path}/claim`, { method: "POST" });
          await call(`${path}/decision`, { method: "POST", body: JSON.stringify(body) });
          $("#reviews-error").textContent = "";
        } catch (error) {
          $("#reviews-error").textContent = `Decision not recorded: ${error.message}`;
        }
        loadReviews();
      };
      approve.addEventListener("click", decide("approve"));
      deny.addEventListener("click", decide("deny"));
      const noteCell = document.createElement("td");
      noteCell.className = "notes";
      noteCell.append(note, message);
      const actions = document.createElement("td");
      actions.append(...(reason ? [reason, document.createTextNode(" ")] : []), approve, document.createTextNode(" "), deny);
      const tr = row(
        cell(duration(review.waiting_seconds), "num"),
        cell(review.request_id, "mono"),
        cell(review.user_id),
        cell(KIND_LABELS[review.kind] || review.kind),
        cell(review.origin),
        cell(review.score, "num"),
        noteCell,
        actions,
      );
      tr.dataset.reviewId = review.id;
      tr.dataset.requestId = review.request_id;
      return tr;
    }),
  );
}

// ------------------------------------------------------------------ wiring

document.addEventListener("DOMContentLoaded", () => {
  $("#sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn({ token: $("#token").value.trim() });
  });
  $("#sign-out").addEventListener("click", signOut);
  $("#feed-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilters();
  });
  $("#feed-filters").addEventListener("reset", () => setTimeout(applyFilters, 0));
  start();
});
