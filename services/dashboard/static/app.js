// The ops page: sign-in, then five views on hash routes (#/ board, #/reviews, #/case/<id>, #/rules,
// #/customers and #/customer/<id>). Text only ever goes in through textContent; every word comes
// from the catalogues of i18n.js; a value not known yet shows "–".
"use strict";

const { t, label } = window.i18n;
const DASH = "–";
const STATE_ROWS = [
  ["pending_risk", "s1"],
  ["under_review", "s5"],
  ["pending_verification", "s6"],
  ["completed", "s2"],
  ["rejected", "s4"],
  ["cancelled", "s3"],
  ["expired", "s3"],
];
const STAGE_CLASSES = ["s1", "s5", "s6", "s3", "s2"];
const OPEN_STATES = ["pending_risk", "under_review", "pending_verification"];
const PER_HOUR_COLUMNS = ["requested", "assessed", "verification_issued", "verified", "completed", "rejected", "cancelled", "expired", "paused", "switched", "resumed"];
const FEED_LIMIT = 300;
const VIEWS = ["board", "reviews", "case", "rules", "customers", "customer"];
// The nav entry each view belongs to.
const NAV_OF = { board: "board", reviews: "reviews", case: "reviews", rules: "rules", customers: "customers", customer: "customers" };
// Which service answers each part of a case or a customer (named when it did not answer).
const SERVICE_OF = { request: "binding", audit: "binding", bindings: "binding", requests: "binding", assessment: "risk", reviews: "risk", risk: "risk", verifications: "verification", devices: "verification", messages: "notification", contact: "notification" };
// Problems whose server detail helps the analyst (a rule's parse error, the allowed reason codes).
const DETAILED_PROBLEMS = new Set(["invalid-rules", "invalid-reason", "window-too-long", "validation-error"]);

const $ = (selector, root = document) => root.querySelector(selector);
const page = {
  session: null,
  source: null,
  timer: null,
  route: { name: "board", arg: null },
  overview: null,
  reviews: null,
  reasons: null,
  deciding: null,
  rules: null,
  candidateDirty: false,
  versions: new Map(),
  eventTypesShown: false,
};

// ------------------------------------------------------------------ DOM helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

function shown(value) {
  return value === null || value === undefined || value === "" ? DASH : String(value);
}

function cell(value, className) {
  const td = el("td", { class: className });
  if (value instanceof Node) td.append(value);
  else td.textContent = shown(value);
  return td;
}

function row(...cells) {
  return el("tr", {}, ...cells);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(i18n.locale()) : DASH;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  if (seconds < 60) return t("duration.s", { s: seconds });
  if (seconds < 3600) return seconds % 60 ? t("duration.min_s", { m: Math.floor(seconds / 60), s: seconds % 60 }) : t("duration.min", { m: seconds / 60 });
  return t("duration.h_min", { h: Math.floor(seconds / 3600), m: Math.floor((seconds % 3600) / 60) });
}

function yesNo(value) {
  return value === null || value === undefined ? DASH : t(value ? "common.yes" : "common.no");
}

function requestLink(requestId, short = false) {
  if (!requestId) return DASH;
  return el("a", { class: "request mono", href: `#/case/${encodeURIComponent(requestId)}`, title: requestId, text: short ? requestId.slice(0, 8) : requestId });
}

function customerLink(userId) {
  if (!userId) return DASH;
  return el("a", { class: "customer", href: `#/customer/${encodeURIComponent(userId)}`, text: userId });
}

function button(text, onclick, className = "secondary", extra = {}) {
  return el("button", { type: "button", class: className, text, onclick, ...extra });
}

// A table of `columns` (catalogue keys; "#key" for a number column) or a line saying there is none.
function table(columns, rows, className) {
  if (!rows.length) return el("p", { class: "muted none", text: t("common.none") });
  const head = row(...columns.map((key) => el("th", { class: key.startsWith("#") ? "num" : null, text: t(key.replace(/^#/, "")) })));
  return el("table", { class: className }, el("thead", {}, head), el("tbody", {}, ...rows));
}

// Label-value pairs ([catalogue key, value or node]).
function facts(pairs) {
  return el("dl", { class: "facts" }, ...pairs.flatMap(([key, value]) => [el("dt", { text: t(key) }), value instanceof Node ? el("dd", {}, value) : el("dd", { text: shown(value) })]));
}

function listOf(value) {
  if (Array.isArray(value)) return value;
  return value && Array.isArray(value.items) ? value.items : null;
}

function fill(selector, ...nodes) {
  $(selector).replaceChildren(...nodes);
}

// What a part shows when its service did not answer, or when it holds nothing.
function missing(part, unavailable) {
  const service = SERVICE_OF[part];
  if (unavailable.includes(service)) return el("p", { class: "notice unavailable", text: t("common.unavailable", { service: label("service", service) }) });
  return el("p", { class: "muted none", text: t("common.not_known") });
}

function flash(message) {
  const box = $("#flash");
  box.textContent = message;
  box.hidden = false;
}

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, body) {
    super(body && (body.detail || body.title) ? body.detail || body.title : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.slug = String(this.body.type || "").split("/").pop();
  }
}

async function request(path, { method = "GET", body, headers = {} } = {}) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    showSignIn();
    const error = new ApiError(401, null);
    error.signedOut = true;
    throw error;
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, data, headers: response.headers };
}

async function call(path, options) {
  return (await request(path, options)).data;
}

// A refusal in the reader's language: known problem types have their own words.
function problemText(error) {
  if (!(error instanceof ApiError)) return t("problem.network");
  const key = `problem.${error.slug}`;
  const text = i18n.has(key) ? t(key, error.body) : t("problem.http", { status: error.status });
  const detail = error.body.detail;
  return detail && (DETAILED_PROBLEMS.has(error.slug) || !i18n.has(key)) ? `${text} (${detail})` : text;
}

function report(selector, error) {
  if (!error.signedOut) $(selector).textContent = problemText(error);
}

// ------------------------------------------------------------------ session

async function start() {
  const session = await (await fetch("/v1/session", { credentials: "same-origin" })).json();
  if (session.signed_in) enter(session);
  else showSignIn();
}

function showSignIn() {
  page.session = null;
  stopLive();
  clearInterval(page.timer);
  VIEWS.forEach((name) => ($(`#view-${name}`).hidden = true));
  for (const id of ["#nav", "#sign-out", "#who", "#events-total", "#flash"]) $(id).hidden = true;
  $("#sign-in").hidden = false;
}

async function signIn(body) {
  $("#sign-in-error").textContent = "";
  try {
    const response = await fetch("/v1/session", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const session = await response.json();
    if (!response.ok) throw new ApiError(response.status, session);
    $("#token").value = "";
    enter(session);
  } catch (error) {
    $("#sign-in-error").textContent = t("session.refused", { why: problemText(error) });
  }
}

async function signOut() {
  await fetch("/v1/session", { method: "DELETE", credentials: "same-origin" });
  showSignIn();
}

function enter(session) {
  page.session = session;
  $("#sign-in").hidden = true;
  for (const id of ["#nav", "#sign-out", "#who"]) $(id).hidden = false;
  $("#who").textContent = session.subject;
  reloadFeed();
  startLive();
  loadReviews();
  clearInterval(page.timer);
  page.timer = setInterval(loadReviews, 5000);
  route();
}

// ------------------------------------------------------------------ routes

function parseRoute() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  if (name === "case" && arg) return { name, arg };
  if (name === "customer" && arg) return { name, arg };
  if (["reviews", "rules", "customers"].includes(name)) return { name, arg: null };
  return { name: "board", arg: null };
}

function route() {
  if (!page.session) return;
  page.route = parseRoute();
  const { name, arg } = page.route;
  VIEWS.forEach((view) => ($(`#view-${view}`).hidden = view !== name));
  document.querySelectorAll("#nav a").forEach((link) => link.classList.toggle("active", link.dataset.route === NAV_OF[name]));
  $("#events-total").hidden = name !== "board" || !page.overview;
  $("#flash").hidden = true;
  ({ board: () => {}, reviews: openReviews, case: loadCase, rules: loadRules, customers: () => $("#lookup").focus(), customer: loadCustomer })[name](arg);
}

// ------------------------------------------------------------------ live stream and feed

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
  pill.dataset.i18n = on ? "live.on" : "live.off";
  pill.textContent = t(pill.dataset.i18n);
  pill.className = `pill ${on ? "on" : "off"}`;
}

async function reloadFeed() {
  const query = filterQuery();
  try {
    const body = await call(`/v1/events?limit=${FEED_LIMIT}${query ? `&${query}` : ""}`);
    $("#feed-list").replaceChildren();
    body.items.reverse().forEach((item) => addFeedItem(item, false));
  } catch (error) {
    if (!error.signedOut) console.warn("feed", error.message);
  }
}

function addFeedItem(item, fresh) {
  const list = $("#feed-list");
  const time = el("span", { class: "mono", text: new Date(item.time).toLocaleTimeString(i18n.locale()) });
  const type = el("span", { class: `type ${item.type}`, text: item.type, translate: "no" });
  // An event about a customer's device belongs to no request: no case to open.
  const request = item.request_id ? requestLink(item.request_id, true) : el("span", { class: "request mono", text: DASH, title: t("feed.no_request") });
  // The line in the page's language (the server words it in each); a language switch reloads the feed.
  const line = (item.summaries && item.summaries[i18n.locale()]) || item.summary;
  const li = el("li", { dataset: { requestId: item.request_id || "", type: item.type, seq: item.seq } }, time, type, request, el("span", { class: "line", text: `${item.user_id} · ${line}` }));
  if (fresh) {
    li.classList.add("fresh");
    setTimeout(() => li.classList.remove("fresh"), 2000);
  }
  list.prepend(li);
  while (list.children.length > FEED_LIMIT) list.lastChild.remove();
  if (fresh && ["RiskAssessed", "ReviewDecided", "UnbindAppealed", "UnbindDisputed"].includes(item.type)) loadReviews();
}

function applyFilters() {
  reloadFeed();
  startLive();
}

// ------------------------------------------------------------------ board

function stageLabel(stage) {
  return stage.split("→").map((part) => label("stage", part)).join(" → ");
}

function renderOverview(overview) {
  page.overview = overview;
  $("#events-total").textContent = t("board.events_total", { n: overview.events_total });
  $("#events-total").hidden = page.route.name !== "board";
  if (!page.eventTypesShown && overview.event_types) {
    const select = $("#filter-type");
    overview.event_types.forEach((name) => select.append(new Option(name, name)));
    page.eventTypesShown = true;
  }
  const now = overview.funnel.now;
  charts.drawBars($("#funnel-bars"), STATE_ROWS.map(([key, cls]) => ({ key, label: label("state", key), cls, value: now[key] || 0 })));
  $("#by-kind tbody").replaceChildren(
    ...Object.entries(overview.funnel.by_kind).map(([kind, states]) => {
      const tr = row(
        cell(label("kind", kind)),
        cell(OPEN_STATES.reduce((sum, state) => sum + (states[state] || 0), 0), "num"),
        ...["completed", "rejected", "cancelled", "expired"].map((state) => cell(states[state] || 0, "num")),
      );
      tr.dataset.kind = kind;
      return tr;
    }),
  );

  $("#per-hour tbody").replaceChildren(
    ...overview.funnel.per_hour
      .slice()
      .reverse()
      .map((h) => row(cell(new Date(h.hour).toISOString().slice(0, 13).replace("T", " ") + ":00"), ...PER_HOUR_COLUMNS.map((k) => cell(h[k] || 0, "num")))),
  );

  const windows = overview.latency.windows;
  const stages = Object.keys(windows["5m"]);
  $("#latency-table tbody").replaceChildren(
    ...stages.map((stage) =>
      row(cell(stageLabel(stage)), ...["5m", "60m"].flatMap((w) => [cell(windows[w][stage].count, "num"), ...["p50", "p95", "p99"].map((q) => cell(charts.formatNumber(windows[w][stage][q]), "num"))])),
    ),
  );
  const perMinute = overview.latency.per_minute_p95;
  charts.drawLineChart(
    $("#latency-chart"),
    $("#latency-legend"),
    perMinute.t,
    stages.map((stage, i) => ({ name: `p95 ${stageLabel(stage)}`, values: perMinute[stage], cls: STAGE_CLASSES[i % STAGE_CLASSES.length] })),
  );

  const series = overview.series;
  charts.drawLineChart($("#throughput-chart"), $("#throughput-legend"), series.t, [
    { name: t("series.events"), values: series.events, cls: "s1" },
    { name: t("series.requests"), values: series.requested, cls: "s5" },
    { name: label("state", "completed"), values: series.completed, cls: "s2" },
  ]);
  charts.drawLineChart($("#outcomes-chart"), $("#outcomes-legend"), series.t, [
    { name: label("state", "completed"), values: series.completed, cls: "s2" },
    { name: label("state", "rejected"), values: series.rejected, cls: "s4" },
    { name: label("state", "cancelled"), values: series.cancelled, cls: "s3" },
    { name: label("state", "expired"), values: series.expired, cls: "s6" },
  ]);

  $("#stuck-count").textContent = overview.stuck.count;
  $("#stuck-count").parentElement.classList.toggle("alert", overview.stuck.count > 0);
  const stuckLabel = $("#stuck-label");
  stuckLabel.removeAttribute("data-i18n");
  stuckLabel.textContent = t("board.stuck_after", { after: duration(overview.stuck_after_seconds) });
  $("#stuck tbody").replaceChildren(
    ...overview.stuck.oldest.map((s) => row(cell(requestLink(s.request_id)), cell(label("state", s.state)), cell(s.last_event), cell(duration(s.waiting_seconds), "num"))),
  );
  $("#dlq-count").textContent = overview.dlq.count;
  $("#dlq-count").parentElement.classList.toggle("alert", overview.dlq.count > 0);
  $("#dlq tbody").replaceChildren(...overview.dlq.recent.map((d) => row(cell(d.event_type), cell(d.consumer_group), cell(d.error))));
}

// ------------------------------------------------------------------ reviews

function holderText(review) {
  if (!review.claimed_by) return t("reviews.unclaimed");
  return review.claimed_by === page.session.subject ? t("reviews.you", { name: review.claimed_by }) : review.claimed_by;
}

function secondReviewerText(review) {
  const first = review.first_decision;
  if (!review.awaiting_second_reviewer || !first) return t("reviews.single");
  return t("reviews.awaits_second", { reviewer: first.reviewer, decision: decisionLabel(review, first.decision), reason: label("reason", first.reason) });
}

function decisionLabel(review, decision) {
  return t(review.origin === "dispute" ? `decision.dispute_${decision}` : `decision.${decision}`);
}

async function loadReviews() {
  if (!page.session) return;
  try {
    const body = await call("/v1/reviews");
    page.reviews = body.items;
    $("#reviews-error").textContent = $("#queue-error").textContent = "";
    renderBoardQueue(body.items);
    renderQueue(body.items);
  } catch (error) {
    report("#reviews-error", error);
    report("#queue-error", error);
  }
}

function renderBoardQueue(items) {
  $("#review-count").textContent = items.length;
  $("#reviews-empty").hidden = items.length > 0;
  $("#reviews tbody").replaceChildren(
    ...items.map((review) => {
      const tr = row(
        cell(duration(review.waiting_seconds), "num"),
        cell(requestLink(review.request_id)),
        cell(customerLink(review.user_id)),
        cell(label("kind", review.kind)),
        cell(label("origin", review.origin)),
        cell(review.score, "num"),
        cell(holderText(review)),
      );
      tr.dataset.reviewId = review.id;
      tr.dataset.requestId = review.request_id;
      tr.classList.toggle("late", Boolean(review.late));
      return tr;
    }),
  );
}

function renderQueue(items) {
  $("#queue-empty").hidden = items.length > 0;
  const me = page.session.subject;
  $("#queue tbody").replaceChildren(
    ...items.map((review) => {
      const mine = review.claimed_by === me;
      const heldByOther = Boolean(review.claimed_by) && !mine;
      const actions = el(
        "td",
        { class: "actions" },
        mine
          ? [button(t("reviews.decide"), () => openDecision(review), "decide"), " ", button(t("reviews.release"), () => release(review), "secondary release")]
          : button(t("reviews.claim"), () => claim(review), "claim", { disabled: heldByOther, title: heldByOther ? t("reviews.held_by", { name: review.claimed_by }) : null }),
      );
      const waited = el("td", { class: "num" }, duration(review.waiting_seconds), review.late ? el("span", { class: "late-badge", text: t("reviews.late") }) : null);
      const tr = row(
        waited,
        cell(duration(review.sla_seconds), "num"),
        cell(requestLink(review.request_id)),
        cell(customerLink(review.user_id)),
        cell(label("kind", review.kind)),
        cell(label("origin", review.origin)),
        cell(review.score, "num"),
        cell(holderText(review), "holder"),
        cell(secondReviewerText(review), "second"),
        actions,
      );
      tr.dataset.reviewId = review.id;
      tr.dataset.requestId = review.request_id;
      tr.classList.toggle("late", Boolean(review.late));
      tr.classList.toggle("mine", mine);
      return tr;
    }),
  );
}

async function openReviews() {
  if (!page.reasons) {
    try {
      page.reasons = await call("/v1/reviews/reasons");
    } catch (error) {
      report("#queue-error", error);
    }
  }
  if (page.reviews) renderQueue(page.reviews);
  loadReviews();
}

async function claim(review) {
  $("#queue-error").textContent = "";
  try {
    openDecision(await call(`/v1/reviews/${encodeURIComponent(review.id)}/claim`, { method: "POST" }));
  } catch (error) {
    report("#queue-error", error);
  }
  loadReviews();
}

async function release(review) {
  $("#queue-error").textContent = "";
  try {
    await call(`/v1/reviews/${encodeURIComponent(review.id)}/claim`, { method: "DELETE" });
    if (page.deciding && page.deciding.id === review.id) closeDecision();
  } catch (error) {
    report("#queue-error", error);
  }
  loadReviews();
}

// The reason codes that fit a decision on this review (GET /v1/reviews/reasons).
function reasonsFor(review, decision) {
  const reasons = page.reasons || {};
  if (review.origin === "dispute") {
    const outcomes = reasons.close_dispute || reasons.dispute;
    if (Array.isArray(outcomes)) return outcomes;
    if (outcomes && typeof outcomes === "object") return outcomes[decision] || [];
  }
  return reasons[decision] || [];
}

function chosenDecision() {
  return $('#decide-form input[name="decision"]:checked').value;
}

function fillReasons() {
  const review = page.deciding;
  const select = $("#decide-reason");
  const codes = reasonsFor(review, chosenDecision());
  select.replaceChildren(new Option(t("decide.choose_reason"), ""), ...codes.map((code) => new Option(label("reason", code), code)));
  select.required = codes.length > 0;
}

function openDecision(review) {
  page.deciding = review;
  const form = $("#decide-form");
  form.reset();
  $("#decide-error").textContent = "";
  const link = $("#decide-request");
  link.textContent = review.request_id;
  link.href = `#/case/${encodeURIComponent(review.request_id)}`;
  $("#decide-approve-label").textContent = decisionLabel(review, "approve");
  $("#decide-deny-label").textContent = decisionLabel(review, "deny");
  const first = review.first_decision;
  $("#decide-first").hidden = !first;
  if (first) {
    $("#decide-first").textContent = t("decide.first_decision", { reviewer: first.reviewer, decision: decisionLabel(review, first.decision), reason: label("reason", first.reason), note: shown(first.note) });
  }
  fillReasons();
  $("#decide").hidden = false;
  $("#decide").dataset.reviewId = review.id;
}

function closeDecision() {
  page.deciding = null;
  $("#decide").hidden = true;
}

async function submitDecision() {
  const review = page.deciding;
  const reason = $("#decide-reason").value;
  if (!reason && $("#decide-reason").required) {
    $("#decide-error").textContent = t("decide.need_reason");
    return;
  }
  const body = { decision: chosenDecision(), note: $("#decide-note").value.trim() };
  if (reason) body.reason = reason;
  const message = $("#decide-message").value.trim();
  if (message) body.customer_message = message;
  $("#decide-submit").disabled = true;
  try {
    const answer = await request(`/v1/reviews/${encodeURIComponent(review.id)}/decision`, { method: "POST", body });
    closeDecision();
    flash(answer.status === 202 ? t("decide.awaits_second") : t("decide.recorded", { request: review.request_id }));
  } catch (error) {
    report("#decide-error", error);
  } finally {
    $("#decide-submit").disabled = false;
  }
  loadReviews();
}

// ------------------------------------------------------------------ case

function requestUser(c) {
  const reviews = listOf(c.reviews) || [];
  return (c.request && c.request.user_id) || (c.assessment && c.assessment.user_id) || (reviews[0] && reviews[0].user_id) || (c.customer && c.customer.risk && c.customer.risk.user_id) || null;
}

async function loadCase(requestId) {
  $("#case-id").textContent = requestId;
  $("#case-error").textContent = "";
  $("#case-unavailable").hidden = true;
  document.querySelectorAll("#view-case .body").forEach((body) => body.replaceChildren(el("p", { class: "muted", text: t("common.loading") })));
  let c;
  try {
    c = await call(`/v1/cases/${encodeURIComponent(requestId)}`);
  } catch (error) {
    report("#case-error", error);
    document.querySelectorAll("#view-case .body").forEach((body) => body.replaceChildren(el("p", { class: "muted", text: DASH })));
    return;
  }
  if (page.route.name !== "case" || page.route.arg !== requestId) return;
  const unavailable = c.unavailable || [];
  if (unavailable.length) {
    $("#case-unavailable").hidden = false;
    $("#case-unavailable").textContent = t("common.unavailable_list", { services: unavailable.map((name) => label("service", name)).join(t("common.list_sep")) });
  }
  const userId = requestUser(c);
  fill("#case-request .body", c.request ? requestFacts(c.request, userId) : missing("request", unavailable));
  fill("#case-impact .body", c.request ? impactView(c.request.impact) : missing("request", unavailable));
  fill("#case-risk .body", c.assessment ? assessmentView(c.assessment) : missing("assessment", unavailable));
  const reviews = listOf(c.reviews);
  fill("#case-reviews .body", reviews ? reviewsTable(reviews) : missing("reviews", unavailable));
  const verifications = listOf(c.verifications);
  fill("#case-verifications .body", ...(verifications ? verificationsView(verifications) : [missing("verifications", unavailable)]));
  fill("#case-customer .body", ...customerParts(c.customer, unavailable, requestId, userId));
  const messages = listOf(c.messages);
  fill("#case-messages .body", messages ? messagesTable(messages, false) : missing("messages", unavailable));
  const audit = listOf(c.audit);
  fill("#case-audit .body", audit ? auditTable(audit) : missing("audit", unavailable));
}

function accountText(account) {
  return account ? `${account.lender} · ${account.account_number}` : null;
}

function requestFacts(r, userId) {
  const pairs = [
    ["col.request", el("span", { class: "mono", text: r.id })],
    ["col.customer", customerLink(userId)],
    ["col.kind", label("kind", r.kind)],
    ["col.state", label("state", r.status)],
    ["case.binding", el("span", { class: "mono", text: shown(r.binding_id) })],
    ["case.reason", label("unbind_reason", r.reason)],
    ["case.customer_note", r.note],
    ["case.channel", label("channel", r.channel)],
    ["case.device", r.device_id],
    ["case.acknowledged", r.acknowledged ? r.acknowledged.map((code) => label("blocker", code)).join(t("common.list_sep")) || t("common.none") : null],
    ["case.risk_decision", r.risk_decision ? label("decision", r.risk_decision) : null],
    ["col.score", r.risk_score],
    ["case.outcome", r.outcome_code ? label("outcome", r.outcome_code) : null],
    ["col.created", when(r.created_at)],
    ["col.updated", when(r.updated_at)],
    ["col.expires", when(r.expires_at)],
  ];
  if (r.kind === "pause") pairs.push(["case.pause_months", r.pause_months]);
  if (r.kind === "switch") pairs.push(["case.new_account", accountText(r.new_repayment_account)]);
  if (r.appeal_message || r.appealed_at) pairs.push(["case.appeal", r.appeal_message], ["case.appealed_at", when(r.appealed_at)]);
  const dispute = r.dispute_message || (r.dispute && r.dispute.message);
  if (dispute || r.dispute) pairs.push(["case.dispute", dispute]);
  return facts(pairs);
}

function impactView(impact) {
  if (!impact) return el("p", { class: "muted none", text: t("case.impact_not_kept") });
  const instalment = impact.current_instalment;
  const parts = [
    facts([
      ["case.assessed_at", when(impact.assessed_at)],
      ["case.credit_effect", impact.credit_record_effect],
      ["case.credit_limit", t("case.limit_change", { before: impact.credit_limit_before, after: impact.credit_limit_after })],
      ["case.auto_debit", yesNo(impact.auto_debit)],
      ["case.instalment", instalment ? t("case.instalment_text", { amount: instalment.amount, due: instalment.due_date, status: label("instalment", instalment.status) }) : t("common.none")],
    ]),
    el("h3", { text: t("case.benefits_lost") }),
    table(["case.benefit"], (impact.benefits_lost || []).map((b) => row(cell(b.description)))),
    el("h3", { text: t("case.blockers") }),
    table(["case.blocker", "case.acknowledgeable"], (impact.blockers || []).map((b) => row(cell(b.message), cell(yesNo(b.acknowledgeable))))),
  ];
  return el("div", {}, ...parts);
}

function assessmentView(a) {
  const weights = Object.fromEntries((a.reasons || []).map((reason) => [reason.code, reason.weight]));
  const signals = Object.entries(a.signals || {}).sort(([x], [y]) => (weights[y] || 0) - (weights[x] || 0));
  return el(
    "div",
    {},
    facts([
      ["col.score", a.score],
      ["case.level", label("level", a.level)],
      ["case.decision", label("decision", a.decision)],
      ["case.matched_rule", a.matched_rule || t("case.no_rule")],
      ["case.rules_version", a.rules_version],
      ["case.methods", (a.required_methods || []).map((m) => label("method", m)).join(t("common.list_sep")) || t("common.none")],
      ["case.assessed_at", when(a.created_at)],
    ]),
    table(
      ["case.signal", "#case.value", "#case.weight"],
      signals.map(([name, value]) => {
        const tr = row(cell(label("signal", name)), cell(value === "" ? DASH : value, "num mono"), cell(weights[name] || 0, "num"));
        tr.dataset.signal = name;
        tr.classList.toggle("weighs", Boolean(weights[name]));
        return tr;
      }),
      "signals",
    ),
    modelView(a),
  );
}

// The anomaly model's part of an assessment: its score (0 to 1), its version and the features that
// pushed the score up the most. Whether it ran in shadow or a rule promoted it is not kept per
// assessment, so it is just "the model".
function modelView(a) {
  const heading = el("h3", { text: t("case.model") });
  if (a.model_score === null || a.model_score === undefined) {
    // No score: the model was warming up; no features either: assessed before risk kept the model's output.
    const line = a.features ? el("p", { class: "muted model-warming", text: t("case.model_warming_up") }) : el("p", { class: "muted none", text: t("case.model_not_recorded") });
    return el("div", { class: "model" }, heading, line);
  }
  const explanation = a.model_explanation || [];
  return el(
    "div",
    { class: "model" },
    heading,
    facts([
      ["case.model_score", el("span", { class: "model-score", text: a.model_score.toFixed(2) })],
      ["case.model_version", a.model_version],
    ]),
    explanation.length
      ? table(
          ["case.feature", "#case.value", "#case.contribution"],
          explanation.map((c) => {
            const tr = row(cell(label("feature", c.feature)), cell(featureValue(c.value), "num mono"), cell(signed(c.contribution), "num mono"));
            tr.dataset.feature = c.feature;
            return tr;
          }),
          "explanation",
        )
      : el("p", { class: "muted none", text: t("case.model_no_push") }),
  );
}

function featureValue(value) {
  if (typeof value !== "number") return value;
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

function signed(value) {
  return `${value > 0 ? "+" : ""}${value.toFixed(2)}`;
}

function reviewsTable(reviews) {
  return table(
    ["col.origin", "col.state", "col.holder", "case.reviewer", "case.reason", "decide.note", "case.to_customer", "col.created", "case.decided_at"],
    reviews.map((r) =>
      row(
        cell(label("origin", r.origin)),
        cell(r.awaiting_second_reviewer ? t("reviews.awaits_second_short") : label("review_status", r.status)),
        cell(r.claimed_by),
        cell(r.reviewer || (r.first_decision && r.first_decision.reviewer)),
        cell(r.reason ? label("reason", r.reason) : null),
        cell(r.note),
        cell(r.customer_message),
        cell(when(r.created_at)),
        cell(when(r.decided_at)),
      ),
    ),
  );
}

function verificationsView(items) {
  if (!items.length) return [el("p", { class: "muted none", text: t("common.none") })];
  return items.map((v) =>
    el(
      "div",
      { class: "verification", dataset: { verificationId: v.verification_id } },
      facts([
        ["case.verification", el("span", { class: "mono", text: shown(v.verification_id) })],
        ["case.purpose", label("purpose", v.purpose)],
        ["col.state", label("verification_status", v.status)],
        ["case.methods", (v.methods || []).map((m) => label("method", m)).join(t("common.list_sep")) || t("common.none")],
        ["col.created", when(v.created_at)],
        ["col.expires", when(v.expires_at)],
      ]),
      table(
        ["case.at", "case.method", "case.result", "case.device"],
        (v.attempts || []).map((attempt) => {
          const tr = row(cell(when(attempt.at)), cell(label("method", attempt.method)), cell(label("result", attempt.result)), cell(attempt.device_id, "mono"));
          tr.classList.toggle("failed", attempt.result !== "passed");
          return tr;
        }),
        "attempts",
      ),
    ),
  );
}

function bindingsTable(bindings) {
  return table(
    ["case.binding", "col.state", "case.lender", "case.account", "case.auto_debit", "col.created"],
    bindings.map((b) =>
      row(
        cell(b.id, "mono"),
        cell(label("binding_status", b.status)),
        cell(b.repayment_account && b.repayment_account.lender),
        cell(b.repayment_account && b.repayment_account.account_number, "mono"),
        cell(yesNo(b.auto_debit)),
        cell(when(b.created_at)),
      ),
    ),
  );
}

function requestsTable(requests) {
  return table(
    ["col.request", "col.kind", "col.state", "case.outcome", "col.created", "col.updated"],
    requests.map((r) => {
      const tr = row(cell(requestLink(r.id)), cell(label("kind", r.kind)), cell(label("state", r.status)), cell(r.outcome_code ? label("outcome", r.outcome_code) : null), cell(when(r.created_at)), cell(when(r.updated_at)));
      tr.dataset.requestId = r.id;
      return tr;
    }),
  );
}

function devicesTable(devices) {
  return table(
    ["case.device", "case.device_name", "col.state", "case.enrolled_at", "case.revoked_at"],
    devices.map((d) =>
      row(
        cell(d.device_id || d.id, "mono"),
        cell(d.name),
        cell(d.status ? label("device_status", d.status) : null),
        cell(when(d.activated_at || d.enrolled_at || d.created_at)),
        cell(d.revoked_at ? when(d.revoked_at) : t("case.not_revoked")),
      ),
    ),
  );
}

function riskView(risk) {
  const profile = risk.profile;
  const flags = risk.flags || [];
  const known = risk.known_devices || [];
  return el(
    "div",
    {},
    facts([
      ["case.account_opened", profile ? when(profile.account_opened_at) : null],
      ["case.phone_changed", profile ? when(profile.phone_changed_at) : null],
    ]),
    el("h3", { text: t("case.flags_title") }),
    table(
      ["case.flag_reason", "col.request", "case.flagged_at", "case.cleared"],
      flags.map((f) =>
        row(cell(label("flag", f.reason)), cell(requestLink(f.request_id)), cell(when(f.flagged_at)), cell(f.cleared_at ? t("case.cleared_by", { who: shown(f.cleared_by), at: when(f.cleared_at) }) : t("case.active_flag"))),
      ),
      "flags",
    ),
    el("h3", { text: t("case.known_devices") }),
    table(
      ["case.device", "case.first_seen", "case.enrolled_at", "case.revoked_at"],
      known.map((d) => row(cell(d.device_id, "mono"), cell(when(d.first_seen_at)), cell(when(d.enrolled_at)), cell(d.revoked_at ? when(d.revoked_at) : t("case.not_revoked")))),
    ),
  );
}

function customerParts(customer, unavailable, currentRequest, userId) {
  if (!customer) return [missing("bindings", unavailable)];
  const requests = listOf(customer.requests);
  const devices = listOf(customer.devices);
  const bindings = listOf(customer.bindings);
  return [
    el("p", {}, customerLink(userId)),
    el("h3", { text: t("case.bindings") }),
    bindings ? bindingsTable(bindings) : missing("bindings", unavailable),
    el("h3", { text: t("case.other_requests") }),
    requests ? requestsTable(requests.filter((r) => r.id !== currentRequest)) : missing("requests", unavailable),
    el("h3", { text: t("case.devices") }),
    devices ? devicesTable(devices) : missing("devices", unavailable),
    el("h3", { text: t("case.flags") }),
    customer.risk ? riskView(customer.risk) : missing("risk", unavailable),
  ];
}

// Messages sent to the customer (masked); with `resend`, each row offers to send it again.
function messagesTable(messages, resend) {
  const columns = ["case.message_kind", "case.channel", "col.state", "case.destination", "col.created", "case.sent_at", "case.resent"];
  return table(
    resend ? [...columns, "col.actions"] : columns,
    messages.map((m) => {
      const cells = [
        cell(label("message_kind", m.kind)),
        cell(label("channel", m.channel)),
        cell(label("message_status", m.status)),
        cell(m.destination, "mono"),
        cell(when(m.created_at)),
        cell(when(m.sent_at)),
        cell(m.resent_at ? t("case.resent_by", { who: shown(m.resent_by), at: when(m.resent_at), why: shown(m.resend_reason) }) : t("common.no")),
      ];
      if (resend) cells.push(el("td", { class: "actions" }, button(t("customer.resend"), (event) => askResend(event.target.parentElement, m), "secondary resend")));
      const tr = row(...cells);
      tr.dataset.messageId = m.id;
      tr.dataset.kind = m.kind;
      tr.dataset.status = m.status;
      return tr;
    }),
    "messages",
  );
}

function auditTable(audit) {
  return table(
    ["case.at", "case.action", "case.from_status", "case.to_status", "case.actor", "case.reason"],
    audit.map((a) => row(cell(when(a.at)), cell(a.action), cell(a.from_status ? label("state", a.from_status) : null), cell(label("state", a.to_status)), cell(`${a.actor} (${label("actor", a.actor_type)})`), cell(a.reason))),
  );
}

// ------------------------------------------------------------------ customers

const MASKED_PHONE = /^\d{3}\*{4}\d{4}$/;

async function lookup() {
  const query = $("#lookup").value.trim();
  $("#lookup-error").textContent = "";
  $("#lookup-results").hidden = $("#lookup-none").hidden = true;
  if (!query) return;
  const param = MASKED_PHONE.test(query) ? "phone" : "user_id";
  try {
    const body = await call(`/v1/customers?${new URLSearchParams({ [param]: query })}`);
    // A search answers a list of matches, or the one customer found.
    const found = listOf(body) || (body && body.user_id ? [{ user_id: body.user_id, ...(body.contact || {}) }] : []);
    $("#lookup-none").hidden = found.length > 0;
    $("#lookup-results").hidden = found.length === 0;
    $("#lookup-results tbody").replaceChildren(
      ...found.map((c) => {
        const tr = row(cell(customerLink(c.user_id)), cell(c.phone, "mono"), cell(c.locale ? label("locale", c.locale) : null));
        tr.dataset.userId = c.user_id;
        return tr;
      }),
    );
  } catch (error) {
    if (error.status === 404) $("#lookup-none").hidden = false;
    else report("#lookup-error", error);
  }
}

async function loadCustomer(userId) {
  $("#customer-id").textContent = userId;
  $("#customer-error").textContent = "";
  $("#customer-unavailable").hidden = true;
  const loading = () => el("p", { class: "muted", text: t("common.loading") });
  fill("#customer-contact");
  document.querySelectorAll("#view-customer .body").forEach((body) => body.replaceChildren(loading()));
  let c;
  try {
    c = await call(`/v1/customers/${encodeURIComponent(userId)}`);
  } catch (error) {
    report("#customer-error", error);
    document.querySelectorAll("#view-customer .body").forEach((body) => body.replaceChildren(el("p", { class: "muted", text: DASH })));
    return;
  }
  if (page.route.name !== "customer" || page.route.arg !== userId) return;
  const unavailable = c.unavailable || [];
  if (unavailable.length) {
    $("#customer-unavailable").hidden = false;
    $("#customer-unavailable").textContent = t("common.unavailable_list", { services: unavailable.map((name) => label("service", name)).join(t("common.list_sep")) });
  }
  const contact = c.contact || {};
  fill("#customer-contact", facts([["col.phone", contact.phone], ["col.email", contact.email], ["col.locale", contact.locale ? label("locale", contact.locale) : null]]));
  const bindings = listOf(c.bindings);
  const requests = listOf(c.requests);
  const devices = listOf(c.devices);
  const messages = listOf(c.messages);
  fill("#customer-bindings .body", bindings ? bindingsTable(bindings) : missing("bindings", unavailable));
  fill("#customer-requests .body", requests ? requestsTable(requests) : missing("requests", unavailable));
  fill("#customer-devices .body", devices ? devicesTable(devices) : missing("devices", unavailable));
  fill("#customer-risk .body", c.risk ? riskView(c.risk) : missing("risk", unavailable));
  fill("#customer-messages .body", messages ? messagesTable(messages, true) : missing("messages", unavailable));
}

// Resending asks why first (kept with the message and audited).
function askResend(td, message) {
  const reason = el("input", { type: "text", class: "resend-reason", maxlength: 200, placeholder: t("customer.resend_reason"), "aria-label": t("customer.resend_reason") });
  const send = button(t("customer.resend_confirm"), async () => {
    if (!reason.value.trim()) {
      $("#customer-error").textContent = t("customer.need_reason");
      return;
    }
    send.disabled = true;
    try {
      await call(`/v1/notifications/${encodeURIComponent(message.id)}/resend`, { method: "POST", body: { reason: reason.value.trim() } });
      flash(t("customer.resent"));
      loadCustomer(page.route.arg);
    } catch (error) {
      send.disabled = false;
      report("#customer-error", error);
    }
  }, "send-again");
  const cancel = button(t("decide.cancel"), () => loadCustomer(page.route.arg));
  td.replaceChildren(reason, " ", send, " ", cancel);
  reason.focus();
}

// ------------------------------------------------------------------ rules

// One rule per line, so an analyst edits and a diff compares rules line by line.
function ruleLine(rule) {
  const ordered = {};
  for (const key of ["name", "action", "if"]) if (key in rule) ordered[key] = rule[key];
  return JSON.stringify({ ...ordered, ...rule });
}

function formatRules(rules) {
  return rules.length ? `[\n  ${rules.map(ruleLine).join(",\n  ")}\n]` : "[]";
}

async function loadRules() {
  $("#rules-error").textContent = "";
  try {
    const answer = await request("/v1/rules");
    page.rules = { etag: answer.headers.get("ETag"), set: answer.data };
  } catch (error) {
    report("#rules-error", error);
    fill("#rules-current .body", el("p", { class: "muted", text: DASH }));
    return;
  }
  const set = page.rules.set;
  page.versions.set(set.version, set);
  fill(
    "#rules-current .body",
    facts([
      ["col.version", set.version],
      ["col.saved_by", set.created_by],
      ["col.saved_at", when(set.created_at)],
      ["rules.comment", set.comment],
    ]),
    table(["col.rule", "rules.action", "rules.condition"], set.rules.map((r) => row(cell(r.name), cell(label("decision", r.action)), cell(r.if, "mono"))), "rules-table"),
  );
  $("#rules-current").dataset.version = set.version;
  if (!page.candidateDirty) $("#candidate").value = formatRules(set.rules);
  loadVersions();
}

async function loadVersions() {
  let items;
  try {
    items = (await call("/v1/rules/versions")).items;
  } catch (error) {
    report("#rules-error", error);
    return;
  }
  const current = page.rules.set.version;
  $("#rules-history tbody").replaceChildren(
    ...items.map((v) => {
      const action = v.version === current ? el("span", { class: "muted", text: t("rules.current") }) : button(t("rules.restore"), () => restore(v.version), "secondary restore");
      const tr = row(
        cell(v.version, "num"),
        cell(v.created_by),
        cell(when(v.created_at)),
        cell(v.comment),
        cell(v.restored_from === null || v.restored_from === undefined ? DASH : t("rules.version_n", { n: v.restored_from })),
        cell(v.rule_count, "num"),
        el("td", {}, action),
      );
      tr.dataset.version = v.version;
      return tr;
    }),
  );
  const options = () => items.map((v) => new Option(t("rules.version_option", { n: v.version, by: v.created_by }), v.version));
  const from = $("#diff-from");
  const to = $("#diff-to");
  const keep = [from.value, to.value];
  from.replaceChildren(...options());
  to.replaceChildren(...options());
  from.value = keep[0] || String(items.length > 1 ? items[1].version : current);
  to.value = keep[1] || String(current);
  if (!from.value) from.value = String(current);
  if (!to.value) to.value = String(current);
}

function candidateRules() {
  let rules;
  try {
    rules = JSON.parse($("#candidate").value);
  } catch (error) {
    $("#rules-editor-error").textContent = t("rules.bad_json", { why: error.message });
    return null;
  }
  if (!Array.isArray(rules)) {
    $("#rules-editor-error").textContent = t("rules.not_a_list");
    return null;
  }
  return rules;
}

async function simulate() {
  $("#rules-editor-error").textContent = "";
  const rules = candidateRules();
  if (!rules) return;
  const days = Number($("#sim-days").value);
  $("#simulate").disabled = true;
  try {
    const result = await call("/v1/rules/simulate", { method: "POST", body: { rules, days } });
    $("#simulation").hidden = false;
    $("#sim-summary").textContent = t("rules.sim_summary", { changed: result.changed, assessments: result.assessments, days: result.days, version: result.rules_version });
    $("#simulation").dataset.changed = result.changed;
    $("#sim-transitions tbody").replaceChildren(
      ...(result.transitions.length ? result.transitions : [{ from: null, to: null, count: 0 }]).map((tr) =>
        row(cell(tr.from ? label("decision", tr.from) : null), cell(tr.to ? label("decision", tr.to) : null), cell(tr.count, "num")),
      ),
    );
    $("#sim-examples tbody").replaceChildren(
      ...result.examples.map((ex) => {
        const tr = row(cell(requestLink(ex.request_id)), cell(customerLink(ex.user_id)), cell(ex.score, "num"), cell(label("decision", ex.from)), cell(label("decision", ex.to)), cell(ex.rule || t("case.no_rule")));
        tr.dataset.requestId = ex.request_id;
        return tr;
      }),
    );
    $("#sim-examples").hidden = result.examples.length === 0;
  } catch (error) {
    $("#simulation").hidden = true;
    report("#rules-editor-error", error);
  } finally {
    $("#simulate").disabled = false;
  }
}

// Saving and restoring send the ETag of the set this page showed: if someone saved since, the
// service answers 412 and nothing is overwritten.
async function changeRules(path, method, body) {
  $("#rules-editor-error").textContent = "";
  try {
    const answer = await request(path, { method, body, headers: { "If-Match": page.rules.etag || "" } });
    page.candidateDirty = false;
    $("#rules-comment").value = "";
    await loadRules();
    return answer.data;
  } catch (error) {
    if (error.status === 412) {
      page.candidateDirty = true;
      await loadRules();
      $("#rules-editor-error").textContent = t("problem.rules-changed", { version: page.rules ? page.rules.set.version : DASH });
    } else {
      report("#rules-editor-error", error);
    }
    return null;
  }
}

async function saveRules() {
  const rules = candidateRules();
  if (!rules) return;
  const before = page.rules.set.version;
  const comment = $("#rules-comment").value.trim();
  const saved = await changeRules("/v1/rules", "PUT", comment ? { rules, comment } : { rules });
  if (saved) flash(saved.version === before ? t("rules.unchanged", { version: before }) : t("rules.saved", { version: saved.version }));
}

async function restore(version) {
  const before = page.rules.set.version;
  const saved = await changeRules(`/v1/rules/versions/${version}/restore`, "POST");
  if (saved) flash(saved.version === before ? t("rules.unchanged", { version: before }) : t("rules.restored", { from: version, version: saved.version }));
}

async function ruleVersion(version) {
  if (!page.versions.has(version)) page.versions.set(version, await call(`/v1/rules/versions/${version}`));
  return page.versions.get(version);
}

// Longest common subsequence of two lists of lines: each line kept, removed or added.
function lineDiff(before, after) {
  const n = before.length;
  const m = after.length;
  const lcs = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i][j] = before[i] === after[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && before[i] === after[j]) out.push([" ", before[i++], j++]);
    else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) out.push(["-", before[i++]]);
    else out.push(["+", after[j++]]);
  }
  return out;
}

async function compare() {
  const from = Number($("#diff-from").value);
  const to = Number($("#diff-to").value);
  try {
    const [a, b] = await Promise.all([ruleVersion(from), ruleVersion(to)]);
    const lines = lineDiff(a.rules.map(ruleLine), b.rules.map(ruleLine));
    const added = lines.filter(([op]) => op === "+").length;
    const removed = lines.filter(([op]) => op === "-").length;
    $("#diff-summary").textContent = t("rules.diff_summary", { from, to, added, removed });
    $("#diff").replaceChildren(...lines.map(([op, text]) => el("li", { class: { "+": "add", "-": "del", " ": "same" }[op], text: `${op} ${text}` })));
  } catch (error) {
    report("#rules-error", error);
  }
}

// ------------------------------------------------------------------ language

function relabel() {
  if (!page.session) return;
  if (page.overview) renderOverview(page.overview);
  if (page.reviews) {
    renderBoardQueue(page.reviews);
    renderQueue(page.reviews);
  }
  if (page.deciding) openDecision(page.deciding);
  reloadFeed();
  const { name, arg } = page.route;
  if (name === "case") loadCase(arg);
  if (name === "customer") loadCustomer(arg);
  if (name === "rules") loadRules();
}

// ------------------------------------------------------------------ wiring

document.addEventListener("DOMContentLoaded", () => {
  i18n.apply(document);
  $("#lang").value = i18n.locale();
  $("#lang").addEventListener("change", (event) => i18n.setLocale(event.target.value));
  document.addEventListener("localechange", relabel);
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
  $("#decide-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitDecision();
  });
  $("#decide-form").addEventListener("change", (event) => {
    if (event.target.name === "decision") fillReasons();
  });
  $("#decide-cancel").addEventListener("click", closeDecision);
  $("#lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    lookup();
  });
  $("#candidate").addEventListener("input", () => (page.candidateDirty = true));
  $("#simulate").addEventListener("click", simulate);
  $("#save-rules").addEventListener("click", saveRules);
  $("#diff-form").addEventListener("submit", (event) => {
    event.preventDefault();
    compare();
  });
  window.addEventListener("hashchange", route);
  start();
});
