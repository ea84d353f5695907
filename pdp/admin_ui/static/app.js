// The admin page's script: signs in, polls /ui/api/*, renders with textContent only (no HTML from data).
"use strict";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
let previous = null;      // the last /ui/api/stats read, for rates and windowed percentiles
const sparkValues = [];
let samples = {};
// One poll loop at a time: its timer and the read in flight, so sign-out can stop it and wait for it
// (a read that reached the server after the session was deleted would come back 401).
const polling = { timer: null, inFlight: null, generation: 0 };

function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = cookie("lucid_ui_csrf");
  const resp = await fetch(path, { credentials: "same-origin", ...options, headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  const doc = await resp.json().catch(() => ({}));
  if (!resp.ok) throw Object.assign(new Error(doc.detail || doc.title || resp.statusText), { status: resp.status });
  return doc;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(tbody, cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.appendChild(cell instanceof Node ? wrap(cell) : el("td", cell));
  tbody.appendChild(tr);
  return tr;
}

function wrap(node) { const td = document.createElement("td"); td.appendChild(node); return td; }

function fmt(n, digits = 1) { return n === null || n === undefined || Number.isNaN(n) ? "–" : Number(n).toFixed(digits); }

// histogram_quantile over cumulative [le, count] buckets, in ms.
function quantileMs(buckets, q) {
  if (!buckets.length || buckets[buckets.length - 1][1] <= 0) return null;
  const rank = q * buckets[buckets.length - 1][1];
  let lowLe = 0, lowCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === null || !Number.isFinite(le)) return lowLe * 1000;
      const span = count - lowCount;
      return (lowLe + (le - lowLe) * (span ? (rank - lowCount) / span : 1)) * 1000;
    }
    lowLe = le; lowCount = count;
  }
  return lowLe * 1000;
}

function renderStats(now) {
  $("total").textContent = now.total;
  $("denied").textContent = now.decisions.deny || 0;
  let rates = {}, buckets = now.buckets, rate = null;
  if (previous) {
    const dt = now.at - previous.at;
    rate = dt > 0 ? (now.total - previous.total) / dt : 0;
    for (const [k, v] of Object.entries(now.reasons)) rates[k] = dt > 0 ? (v - (previous.reasons[k] || 0)) / dt : 0;
    const windowed = now.buckets.map(([le, c], i) => [le, c - ((previous.buckets[i] || [le, 0])[1])]);
    if (windowed.length && windowed[windowed.length - 1][1] > 0) buckets = windowed;
  }
  $("rate").textContent = fmt(rate);
  $("p50").textContent = fmt(quantileMs(buckets, 0.5), 2);
  $("p90").textContent = fmt(quantileMs(buckets, 0.9), 2);
  $("p99").textContent = fmt(quantileMs(buckets, 0.99), 2);
  if (rate !== null) {
    sparkValues.push(rate); if (sparkValues.length > 60) sparkValues.shift();
    const max = Math.max(1, ...sparkValues);
    $("sparkline").setAttribute("points", sparkValues.map((v, i) => `${i * 5},${40 - (v / max) * 38}`).join(" "));
  }
  const reasons = $("reasons").tBodies[0]; reasons.replaceChildren();
  for (const [k, v] of Object.entries(now.reasons).sort((a, b) => b[1] - a[1])) {
    row(reasons, [el("span", k, k.startsWith("deny") ? "deny" : "allow"), v, fmt(rates[k])]);
  }
  const verdicts = $("quota-verdicts").tBodies[0]; verdicts.replaceChildren();
  for (const [k, v] of Object.entries(now.quota)) row(verdicts, [k, v]);
  previous = now;
}

function renderHealth(doc) {
  const list = $("deps"); list.replaceChildren();
  for (const [name, d] of Object.entries(doc.dependencies)) {
    const state = d.ok === null ? "not configured" : d.ok ? "ok" : "down";
    const extra = [d.name, d.revision, d.ms !== undefined ? d.ms + " ms" : null, d.detail, d.error].filter(Boolean).join(", ");
    const li = el("li", `${name}: ${state}${extra ? " (" + extra + ")" : ""}`, d.ok === false ? "down" : "ok");
    li.dataset.dep = name;
    list.appendChild(li);
  }
}

function renderQuotas(doc) {
  $("quota-note").textContent = !doc.enabled ? "Quotas are off (RATE_LIMIT_ENABLED=false)." : (doc.note || "");
  const tbody = $("quota-keys").tBodies[0]; tbody.replaceChildren();
  for (const k of doc.keys) {
    const quotas = k.quotas.map((q) => `${q.name}: ${q.remaining} left (limit ${q.limit}` +
      `${q.burst ? ", burst " + q.burst : ""}), reset in ${q.reset_s}s`).join("; ");
    const overrides = [k.overrides.plan ? "plan " + k.overrides.plan : "",
      ...Object.entries(k.overrides.descriptors).map(([n, o]) => `${n} limit ${o.limit}`)].filter(Boolean).join("; ");
    const button = el("button", "Reset");
    button.dataset.key = k.key;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try { await api("/ui/api/quotas/reset", { method: "POST", body: { key: k.key } }); await refreshQuotas(); }
      catch (err) { alert("reset failed: " + err.message); }
    });
    const tr = row(tbody, [k.key, k.spent, quotas || "–", overrides || "–", button]);
    tr.dataset.key = k.key;
  }
}

function renderDecisions(doc) {
  const tbody = $("decision-log").tBodies[0]; tbody.replaceChildren();
  for (const e of doc.entries) {
    const sub = (e.input && e.input.subject && e.input.subject.sub) || "anonymous";
    const r = e.result || {};
    const replay = el("button", "Replay");
    replay.addEventListener("click", () => evaluate({ replay: e.decision_id }));
    const tr = row(tbody, [e.timestamp, `${e.method} ${e.path}`, sub,
      el("span", `${r.allow ? "allow" : "deny"} ${r.status} ${r.reason}`, r.allow ? "allow" : "deny"), e.eval_ms, replay]);
    tr.dataset.decisionId = e.decision_id;
  }
}

async function refreshQuotas() { renderQuotas(await api("/ui/api/quotas")); }

async function refreshDecisions() {
  const q = new URLSearchParams({ limit: "20", subject: $("f-subject").value, route: $("f-route").value, decision: $("f-decision").value });
  renderDecisions(await api("/ui/api/decisions?" + q));
}

async function readAll() {
  const [stats, health] = await Promise.all([api("/ui/api/stats"), api("/ui/api/health")]);
  renderStats(stats); renderHealth(health);
  await Promise.all([refreshQuotas(), refreshDecisions()]);
}

async function poll(generation) {
  polling.timer = null;
  if (generation !== polling.generation) return;
  polling.inFlight = readAll();
  try {
    await polling.inFlight;
  } catch (err) {
    if (generation === polling.generation && (err.status === 401 || err.status === 403)) {
      stopPolling();
      return showSignIn(err.message);
    }
  } finally {
    polling.inFlight = null;
  }
  if (generation === polling.generation) polling.timer = setTimeout(() => poll(generation), POLL_MS);
}

function startPolling() { stopPolling(); poll(polling.generation); }

// Returns the read still in flight (or null) so a caller can wait for it.
function stopPolling() {
  polling.generation += 1;
  if (polling.timer !== null) clearTimeout(polling.timer);
  polling.timer = null;
  return polling.inFlight;
}

async function signOut() {
  await Promise.resolve(stopPolling()).catch(() => {});
  await api("/ui/session", { method: "DELETE" }).catch(() => {});
  showSignIn();
}

async function evaluate(body) {
  $("pg-raw").textContent = "evaluating…";
  try {
    const doc = await api("/ui/api/playground", { method: "POST", body });
    if (doc.input) $("pg-input").value = JSON.stringify(doc.input, null, 2);
    if (!doc.ok) {
      for (const id of ["pg-allow", "pg-status", "pg-reason", "pg-ms"]) $(id).textContent = "–";
      renderEngines({ engines: {}, agree: null, rules: null, rules_not_fired: null, rules_note: "" });
      $("pg-meta").textContent = `${doc.stage} failed on the ${doc.engine} engine (${doc.revision})`;
      $("pg-raw").textContent = doc.error;
      return;
    }
    const d = doc.decision;
    $("pg-allow").textContent = d.allow; $("pg-allow").className = "value " + (d.allow ? "allow" : "deny");
    $("pg-status").textContent = d.status;
    $("pg-reason").textContent = d.reason;
    $("pg-ms").textContent = fmt(doc.eval_ms, 3);
    $("pg-meta").textContent = `${doc.draft ? "draft" : "loaded policy"} ${doc.revision} on the ${doc.engine} engine` +
      (doc.compile_ms !== null ? `, compiled in ${fmt(doc.compile_ms, 1)} ms` : "");
    renderEngines(doc);
    $("pg-raw").textContent = JSON.stringify(doc.result, null, 2);
  } catch (err) {
    $("pg-raw").textContent = "error: " + err.message;
  }
}

// Both engines' decisions and timings, whether they agree, and the rules that fired (as OPA evaluated them).
function renderEngines(doc) {
  const tbody = $("pg-engines").tBodies[0]; tbody.replaceChildren();
  for (const [name, e] of Object.entries(doc.engines || {})) {
    const d = e.decision || {};
    const ms = e.eval_ms === null || e.eval_ms === undefined ? "–" : fmt(e.eval_ms, 3);
    const tr = e.ok
      ? row(tbody, [name, e.via, el("span", d.allow, d.allow ? "allow" : "deny"), d.status, d.reason, ms,
          e.timing + (e.process_ms !== undefined ? `; opa eval process ${fmt(e.process_ms, 1)} ms` : "") +
          (e.round_trip_ms !== undefined ? `; round trip ${fmt(e.round_trip_ms, 3)} ms` : "")])
      : row(tbody, [name, e.via || "–", "–", "–", el("span", (e.stage ? e.stage + ": " : "") + e.error, "deny"), "–", "–"]);
    tr.dataset.engine = name;
  }
  $("pg-agree").textContent = doc.agree === true ? "The engines agree."
    : doc.agree === false ? "The engines DISAGREE: compare the raw results." : "";
  $("pg-agree").className = doc.agree === false ? "deny" : "";
  const fired = $("pg-fired"); fired.replaceChildren();
  for (const name of doc.rules || []) fired.appendChild(el("li", name, "allow"));
  const notFired = $("pg-not-fired"); notFired.replaceChildren();
  for (const name of doc.rules_not_fired || []) notFired.appendChild(el("li", name));
  $("pg-rules").textContent = doc.rules_note || "";
}

function playgroundRequest() {
  let input;
  try { input = JSON.parse($("pg-input").value); }
  catch (err) { $("pg-raw").textContent = "the input is not JSON: " + err.message; return; }
  const body = { input };
  if ($("pg-draft").value.trim()) body.draft = { [$("pg-draft-path").value.trim()]: $("pg-draft").value };
  evaluate(body);
}

async function loadSamples() {
  samples = (await api("/ui/api/playground/samples")).samples;
  const select = $("pg-sample"); select.replaceChildren();
  for (const name of Object.keys(samples)) select.appendChild(el("option", name));
  select.addEventListener("change", () => { $("pg-input").value = JSON.stringify(samples[select.value], null, 2); });
  $("pg-input").value = JSON.stringify(samples[select.value], null, 2);
}

function showSignIn(message) {
  $("app").hidden = true; $("signin-panel").hidden = false; $("signout").hidden = true;
  $("who").textContent = "not signed in";
  $("signin-error").textContent = message || "";
}

async function start() {
  const me = await api("/ui/api/me");
  $("who").textContent = `signed in as ${me.sub}`;
  $("signin-panel").hidden = true; $("app").hidden = false; $("signout").hidden = false;
  await loadSamples();
  startPolling();
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin").addEventListener("click", async () => {
    try { await api("/ui/session", { method: "POST", body: { token: $("token").value.trim() } }); $("token").value = ""; await start(); }
    catch (err) { showSignIn(err.message); }
  });
  $("signout").addEventListener("click", signOut);
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); refreshDecisions(); });
  $("pg-eval").addEventListener("click", playgroundRequest);
  start().catch(() => showSignIn());
});
