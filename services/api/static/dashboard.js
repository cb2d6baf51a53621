/* CX Pulse live dashboard: tiles from /v1/pulse + /v1/stream, sparklines from /v1/series (uPlot),
   the journey row from /v1/journey and alerts from /v1/alerts. No build step: plain browser JS. */
"use strict";

(() => {
  // Which KPIs exist, their unit and which way is good come from the service (GET /v1/metrics, the
  // metric registry); the page only knows how to name and format them.
  const LABELS = {
    nps: "NPS", csat: "CSAT", ces: "CES", fcr: "First-contact resolution",
    resolution_time: "Resolution time (median)", active_customers: "Active customers",
    dau: "DAU", wau: "WAU", mau: "MAU", stickiness: "Stickiness (DAU/MAU)", churn: "Churn",
    retention: "Retention", trial_conversion: "Trial conversion", referral_rate: "Referral rate",
  };
  const KIND_OF_UNIT = { "%": "pct", s: "duration", score: "score", customers: "count" };
  // scores on a short scale (CES 1…7) need two decimals to show a change; NPS (−100…100) one
  const FINE_SCORES = new Set(["ces"]);
  let METRICS = []; // [{id, label, kind, direction: +1 higher is better / -1 lower is better, volume}]
  let BY_ID = {};

  function useRegistry(list) {
    METRICS = list.map((m) => ({
      id: m.id,
      label: LABELS[m.id] || m.id,
      kind: m.unit === "score" && FINE_SCORES.has(m.id) ? "fine" : KIND_OF_UNIT[m.unit] || "number",
      direction: m.direction === "lower" ? -1 : 1,
      // counts measure volume, not quality: a small touchpoint is not the journey's worst
      volume: m.unit === "customers",
      description: m.description || "",
    }));
    BY_ID = Object.fromEntries(METRICS.map((m) => [m.id, m]));
  }

  const JOURNEY = ["website", "checkout", "onboarding", "usage", "support", "subscription", "survey"];
  const FILTERS = ["touchpoint", "channel", "segment"];
  const SIDE_REFRESH_MS = 30_000; // journey, alerts and sparklines: at most this often from live events
  // The API key the page was opened with (`/?key=…`, when the service requires keys): sent on every
  // request as `Authorization: Bearer`, and as `?key=` where a header cannot go (EventSource).
  const KEY = new URLSearchParams(location.search).get("key") || "";
  const withKey = (q) => (KEY ? `${q}${q ? "&" : ""}key=${encodeURIComponent(KEY)}` : q);

  const $ = (sel, root = document) => root.querySelector(sel);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    node.append(...children);
    return node;
  };

  // ---- formatting -------------------------------------------------------------------------------------
  const nf0 = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
  const nf1 = new Intl.NumberFormat("en", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const nf2 = new Intl.NumberFormat("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const sig2 = new Intl.NumberFormat("en", { maximumSignificantDigits: 2 });

  function duration(s) {
    const a = Math.abs(s);
    if (a < 90) return `${nf0.format(s)} s`;
    if (a < 5400) return `${nf1.format(s / 60)} min`;
    if (a < 129600) return `${nf1.format(s / 3600)} h`;
    return `${nf1.format(s / 86400)} d`;
  }

  function fmt(kind, v) {
    if (v === null || v === undefined) return "–";
    switch (kind) {
      case "pct": return `${nf1.format(v)}%`;
      case "score": return nf1.format(v);
      case "fine": return nf2.format(v);
      case "duration": return duration(v);
      case "count": return nf0.format(v);
      default: return String(v);
    }
  }

  function fmtDelta(kind, d) {
    const sign = d > 0 ? "+" : d < 0 ? "−" : "±";
    const a = Math.abs(d);
    // a real change must not read as ±0.0: small ones get two significant digits
    const num = a > 0 && a < 0.05 ? sig2.format(a) : kind === "fine" ? nf2.format(a) : nf1.format(a);
    switch (kind) {
      case "pct": return `${sign}${num} pp`;
      case "duration": return `${sign}${duration(a)}`;
      case "count": return `${sign}${nf0.format(a)}`;
      default: return `${sign}${num}`;
    }
  }

  // ---- state ------------------------------------------------------------------------------------------
  const state = { window: "24h", touchpoint: "", channel: "", segment: "" };
  const plots = new Map(); // metric id -> uPlot
  let source = null;
  let current = null; // the query the page shows
  let reopenTimer = null;
  let lastSide = 0;
  let features = null; // paths the server's OpenAPI lists: optional endpoints are asked only if present

  /** The view's query string; `withWindow: false` for endpoints that take no window (series). */
  function query(extra = {}, withWindow = true) {
    const p = new URLSearchParams();
    if (withWindow) p.set("window", state.window);
    for (const f of FILTERS) if (state[f]) p.set(f, state[f]);
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    return p.toString();
  }

  function readControls() {
    state.window = $("#window").value;
    for (const f of FILTERS) state[f] = $(`#${f}`).value.trim().toLowerCase();
  }

  function writeControls() {
    $("#window").value = state.window;
    for (const f of FILTERS) $(`#${f}`).value = state[f];
  }

  function fromLocation() {
    const p = new URLSearchParams(location.search);
    if (["1h", "24h", "7d", "30d"].includes(p.get("window"))) state.window = p.get("window");
    for (const f of FILTERS) state[f] = p.get(f) || "";
  }

  async function getJson(url) {
    const headers = { Accept: "application/json" };
    if (KEY) headers.Authorization = `Bearer ${KEY}`;
    const res = await fetch(url, { headers });
    if (!res.ok) {
      const err = new Error(`${url}: HTTP ${res.status}`);
      err.status = res.status;
      try { err.body = await res.json(); } catch (_) { /* not JSON */ }
      throw err;
    }
    return res.json();
  }

  // ---- tiles ------------------------------------------------------------------------------------------
  function buildTiles() {
    const root = $("#tiles");
    for (const m of METRICS) {
      const tile = el("article", { class: "tile", "data-metric": m.id, "data-state": "loading",
                                   "aria-labelledby": `t-${m.id}` },
        el("h3", { id: `t-${m.id}`, text: m.label, title: m.description }),
        el("p", { class: "value", "aria-live": "off" }, el("span", { class: "num", text: "…" })),
        el("p", { class: "empty", text: "Not enough data" }),
        el("dl", { class: "stats" },
          el("div", m.kind === "count" ? { hidden: "" } : {},
             el("dt", { text: "95% CI" }), el("dd", { class: "ci", text: "–" })),
          el("div", {}, el("dt", { text: "n" }), el("dd", { class: "n", text: "–" }))),
        el("p", { class: "delta", text: " " }),
        el("div", { class: "spark", "aria-hidden": "true", title: "trend over the window" }));
      root.append(tile);
    }
  }

  function renderTile(m, r) {
    const tile = $(`.tile[data-metric="${m.id}"]`);
    if (!tile) return;
    const empty = !r || r.value === null || r.value === undefined;
    tile.dataset.state = empty ? "empty" : "ok";
    tile.dataset.value = empty ? "" : String(r.value);
    $(".num", tile).textContent = empty ? "–" : fmt(m.kind, r.value);
    $(".ci", tile).textContent = r && Array.isArray(r.ci) && r.ci[0] !== null
      ? `${fmt(m.kind, r.ci[0])} – ${fmt(m.kind, r.ci[1])}` : "–";
    $(".n", tile).textContent = r && r.n !== null && r.n !== undefined ? nf0.format(r.n) : "–";
    const delta = $(".delta", tile);
    delta.className = "delta";
    if (!r || r.delta === null || r.delta === undefined) {
      const prev = r && r.previous && r.previous.value !== null && r.previous.value !== undefined;
      delta.textContent = prev ? `previous ${fmt(m.kind, r.previous.value)}` : "no previous data";
      return;
    }
    const arrow = r.delta > 0 ? "▲" : r.delta < 0 ? "▼" : "■";
    const better = m.direction * Math.sign(r.delta);
    delta.classList.add(better > 0 ? "good" : better < 0 ? "bad" : "flat");
    const sig = r.significant === true ? "significant" : r.significant === false ? "not significant" : "";
    delta.classList.toggle("sig", r.significant === true);
    delta.textContent = "";
    delta.append(
      el("span", { class: "arrow", "aria-hidden": "true", text: arrow }),
      ` ${fmtDelta(m.kind, r.delta)} vs previous`,
      ...(sig ? [el("span", { class: "mark", title: "two-sided test at 5%",
                               text: r.significant ? " ✱ significant" : " · n.s.",
                               "aria-label": sig })] : []));
  }

  function renderPulse(body) {
    if (!body || !body.readings) return;
    for (const [id, r] of Object.entries(body.readings)) if (BY_ID[id]) renderTile(BY_ID[id], r);
    const at = body.at ? new Date(body.at) : new Date();
    $("#as-of").textContent = `${body.window} window, as of ${at.toLocaleTimeString()}`;
    document.body.dataset.window = body.window;
  }

  // ---- sparklines -------------------------------------------------------------------------------------
  function windowSeconds(w) {
    const n = parseInt(w, 10);
    return n * { s: 1, m: 60, h: 3600, d: 86400 }[w.slice(-1)];
  }

  // dau/wau/mau/stickiness ignore the window: their trend is daily (a 30-day count every few minutes
  // is flat, and costly to compute).
  const TRAILING = new Set(["dau", "wau", "mau", "stickiness"]);

  async function loadSeries(m) {
    const secs = TRAILING.has(m.id) ? 24 * 86400 : windowSeconds(state.window);
    const step = Math.max(1, Math.round(secs / 24));
    const to = new Date();
    const from = new Date(to.getTime() - 24 * step * 1000);
    const extra = { step: `${step}s`, from: from.toISOString(), to: to.toISOString() };
    const body = await getJson(`/v1/series/${m.id}?${query(extra, false)}`);
    const xs = [], ys = [];
    for (const p of body.points) {
      xs.push((Date.parse(p.start) + Date.parse(p.end)) / 2000); // bucket midpoints, in unix seconds
      ys.push(p.value === undefined ? null : p.value);
    }
    drawSpark(m, [xs, ys]);
  }

  function drawSpark(m, data) {
    const box = $(`.tile[data-metric="${m.id}"] .spark`);
    const width = Math.max(60, box.clientWidth);
    const old = plots.get(m.id);
    if (old) {
      old.setData(data);
      if (old.width !== width) old.setSize({ width, height: 36 });
      return;
    }
    const plot = new uPlot({
      width, height: 36, pxAlign: false,
      cursor: { show: false }, select: { show: false }, legend: { show: false },
      // pad x so the newest bucket's point is not cut in half at the edge (a fresh service has one)
      scales: { x: { time: false, range: (u, lo, hi) => [lo - (hi - lo) / 30, hi + (hi - lo) / 30] } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: "#1d4ed8", width: 1.5, fill: "rgba(29, 78, 216, 0.12)", spanGaps: true,
                     // a lone reading has no line to draw: mark the points while there are few
                     points: { size: 5, fill: "#1d4ed8",
                               show: (u, i) => u.data[i].filter((v) => v !== null).length < 3 } }],
    }, data, box);
    plots.set(m.id, plot);
  }

  /** Two at a time: the store answers one query at a time, and a page load must not queue 14 of them
      in front of the writes and the live readings. */
  async function loadAllSeries() {
    const todo = [...METRICS];
    const worker = async () => {
      for (let m = todo.shift(); m; m = todo.shift()) {
        try { await loadSeries(m); } catch (e) {
          $(`.tile[data-metric="${m.id}"] .spark`).dataset.error = String(e.message);
        }
      }
    };
    await Promise.all([worker(), worker()]);
  }

  // ---- journey ----------------------------------------------------------------------------------------
  function unavailable(box, what) {
    box.replaceChildren(el("p", { class: "muted notyet", text: `${what} not available on this server yet.` }));
    box.dataset.state = "unavailable";
  }

  async function loadJourney() {
    const box = $("#journey");
    if (!has("/v1/journey")) return unavailable(box, "The journey view is");
    let body;
    try {
      const p = new URLSearchParams(query());
      p.delete("touchpoint");
      body = await getJson(`/v1/journey?${p}`);
    } catch (e) {
      if (e.status === 404) return unavailable(box, "The journey view is");
      box.replaceChildren(el("p", { class: "error", text: `Journey: ${e.message}` }));
      return;
    }
    const tps = Object.keys(body.touchpoints || {});
    if (!tps.length) {
      box.replaceChildren(el("p", { class: "muted", text: "No touchpoints seen in this window." }));
      box.dataset.state = "empty";
      return;
    }
    const table = el("table", { class: "journey" });
    table.append(el("caption", { class: "sr-only", text: "KPIs per touchpoint in journey order" }));
    const head = el("tr", {}, el("th", { scope: "col", text: "KPI" }));
    for (const tp of tps) head.append(el("th", { scope: "col", text: tp }));
    table.append(el("thead", {}, head));
    const tbody = el("tbody");
    for (const m of METRICS) {
      const values = tps.map((tp) => {
        const r = (body.touchpoints[tp] || {})[m.id];
        return r && r.value !== null && r.value !== undefined ? r.value : null;
      });
      const known = values.filter((v) => v !== null);
      let worst = null;
      if (!m.volume && known.length > 1) {
        worst = m.direction > 0 ? Math.min(...known) : Math.max(...known);
        if (known.every((v) => v === worst)) worst = null;
      }
      const row = el("tr", { "data-metric": m.id }, el("th", { scope: "row", text: m.label }));
      values.forEach((v, i) => {
        const cell = el("td", { "data-touchpoint": tps[i], "data-value": v === null ? "" : String(v),
                                text: fmt(m.kind, v) });
        if (worst !== null && v === worst) {
          cell.classList.add("worst");
          cell.append(el("span", { class: "mark", "aria-label": "worst", text: " ▼" }));
        }
        row.append(cell);
      });
      tbody.append(row);
    }
    table.append(tbody);
    box.replaceChildren(table);
    box.dataset.state = "ok";
    fillList("touchpoint-values", [...JOURNEY, ...tps]);
  }

  // ---- outcomes ---------------------------------------------------------------------------------------
  const OUTCOMES = [["repurchase", "bought again"], ["churned", "cancelled"], ["referred", "referred someone"]];

  function outcomeBar(share) {
    const bar = el("div", { class: "obar", role: "img" });
    if (share.value === null || share.value === undefined) {
      bar.setAttribute("aria-label", "no customers");
      bar.append(el("span", { class: "olabel muted", text: "–" }));
      return bar;
    }
    const [lo, hi] = share.ci || [share.value, share.value];
    bar.setAttribute("aria-label", `${share.value.toFixed(1)}%, 95% CI ${lo.toFixed(1)}–${hi.toFixed(1)}%`);
    const track = el("span", { class: "otrack" });
    track.append(el("span", { class: "ofill", style: `width:${share.value}%` }));
    track.append(el("span", { class: "oci", style: `left:${lo}%;width:${Math.max(hi - lo, 0.5)}%` }));
    bar.append(track, el("span", { class: "olabel", text: `${share.value.toFixed(1)}%` }));
    return bar;
  }

  async function loadOutcomes() {
    const box = $("#outcomes");
    if (!has("/v1/outcomes")) return unavailable(box, "The outcomes view is");
    const p = new URLSearchParams(query({}, false));
    p.set("survey", $("#oc-survey").value);
    p.set("window", $("#oc-window").value);
    p.set("horizon", $("#oc-horizon").value);
    let body;
    try {
      body = await getJson(`/v1/outcomes?${p}`);
    } catch (e) {
      if (e.status === 404) return unavailable(box, "The outcomes view is");
      box.replaceChildren(el("p", { class: "error", text: `Outcomes: ${e.message}` }));
      return;
    }
    const table = el("table", { class: "outcomes" });
    table.append(el("caption", { class: "sr-only", text: "Outcomes per answer group" }));
    const head = el("tr", {}, el("th", { scope: "col", text: "group" }), el("th", { scope: "col", "data-col": "customers", text: "customers" }));
    for (const [id, label] of OUTCOMES) {
      const sig = body.significant[id];
      const mark = sig === null ? "" : sig ? " ★ significant" : " · n.s.";
      head.append(el("th", { scope: "col", "data-outcome": id, text: `${label}${mark}` }));
    }
    table.append(el("thead", {}, head));
    const tbody = el("tbody");
    for (const [group, g] of Object.entries(body.groups)) {
      const row = el("tr", { "data-group": group }, el("th", { scope: "row", text: group }),
                     el("td", { class: "num", text: String(g.customers) }));
      for (const [id] of OUTCOMES) {
        const cell = el("td", { "data-outcome": id, "data-value": g[id].value === null ? "" : String(g[id].value) });
        cell.append(outcomeBar(g[id]));
        row.append(cell);
      }
      tbody.append(row);
    }
    table.append(tbody);
    const total = Object.values(body.groups).reduce((n, g) => n + g.customers, 0);
    box.replaceChildren(table);
    if (!total) box.append(el("p", { class: "muted", text: "No answers in this cohort yet: every customer's horizon must have passed." }));
    box.dataset.state = total ? "ok" : "empty";
  }

  // ---- alerts -----------------------------------------------------------------------------------------
  const listOf = (body, key) => (Array.isArray(body) ? body : (body && (body[key] || body.items)) || []);

  async function loadAlerts() {
    const box = $("#alerts");
    if (!has("/v1/alerts")) return unavailable(box, "Alerts are");
    let items;
    try {
      items = listOf(await getJson("/v1/alerts?state=firing"), "alerts");
    } catch (e) {
      if (e.status === 404) return unavailable(box, "Alerts are");
      box.replaceChildren(el("p", { class: "error", text: `Alerts: ${e.message}` }));
      return;
    }
    box.dataset.state = items.length ? "firing" : "quiet";
    if (!items.length) return box.replaceChildren(el("p", { class: "muted", text: "No alert is firing." }));
    const ul = el("ul", { class: "alerts" });
    for (const a of items) {
      const rule = a.rule || a;
      const metric = BY_ID[rule.metric];
      const value = a.reading ? fmt(metric ? metric.kind : "", a.reading.value) : "";
      ul.append(el("li", { class: `sev-${rule.severity || "warning"}` },
        el("strong", { text: rule.name || rule.id || "alert" }),
        ` ${metric ? metric.label : rule.metric || ""} ${value}`,
        el("span", { class: "muted", text: a.since ? ` since ${new Date(a.since).toLocaleString()}` : "" })));
    }
    box.replaceChildren(ul);
  }

  async function loadResponses() {
    const box = $("#responses");
    if (!has("/v1/alerts/notifications")) return unavailable(box, "Close-the-loop answers are");
    let items;
    try {
      items = listOf(await getJson("/v1/alerts/notifications?kind=response&limit=10"), "notifications");
    } catch (e) {
      if (e.status === 404) return unavailable(box, "Close-the-loop answers are");
      box.replaceChildren(el("p", { class: "error", text: `Answers: ${e.message}` }));
      return;
    }
    items = items.filter((n) => (n.kind || (n.payload || n.body || {}).kind || "response") === "response");
    box.dataset.state = items.length ? "ok" : "empty";
    if (!items.length) return box.replaceChildren(el("p", { class: "muted", text: "No answers to close yet." }));
    const ul = el("ul", { class: "answers" });
    for (const n of items.slice(0, 10)) {
      const b = n.payload || n.body || n;
      ul.append(el("li", {},
        el("strong", { text: `${(b.survey || "").toUpperCase()} ${b.score ?? ""}` }),
        ` ${b.customer_id || ""}`,
        b.comment ? el("q", { text: b.comment }) : "",
        el("span", { class: "muted", text: ` ${[b.touchpoint, b.channel].filter(Boolean).join(" · ")}` })));
    }
    box.replaceChildren(ul);
  }

  // ---- filters' suggestions ---------------------------------------------------------------------------
  function fillList(id, values) {
    const list = document.getElementById(id);
    list.replaceChildren(...[...new Set(values)].map((v) => el("option", { value: v })));
  }

  async function loadSuggestions() {
    fillList("touchpoint-values", JOURNEY);
    for (const by of ["channel", "segment"]) {
      try {
        const body = await getJson(`/v1/pulse/active_customers/breakdown?by=${by}&window=30d`);
        fillList(`${by}-values`, Object.keys(body.groups || {}));
      } catch (_) { /* suggestions are optional */ }
    }
  }

  function has(path) {
    return features === null || features.has(path);
  }

  async function loadFeatures() {
    try {
      features = new Set(Object.keys((await getJson("/openapi.json")).paths || {}));
    } catch (_) {
      features = null; // unknown: ask and treat a 404 as "not available yet"
    }
  }

  // ---- live -------------------------------------------------------------------------------------------
  function setStatus(s, text) {
    const node = $("#status");
    node.dataset.state = s;
    node.textContent = text;
  }

  function refreshSide(force) {
    const now = Date.now();
    if (!force && now - lastSide < SIDE_REFRESH_MS) return;
    lastSide = now;
    loadJourney();
    loadOutcomes();
    loadAlerts();
    loadResponses();
    loadAllSeries();
  }

  function openStream() {
    clearTimeout(reopenTimer);
    if (source) source.close();
    const es = new EventSource(`/v1/stream?${withKey(query())}`);
    source = es;
    es.addEventListener("pulse", (e) => {
      if (source !== es) return; // a stream of a view the page has left
      renderPulse(JSON.parse(e.data));
      document.body.dataset.lastEventId = e.lastEventId;
      refreshSide(false);
    });
    es.addEventListener("alert", () => { loadAlerts(); loadResponses(); });
    let dropped = false;
    es.addEventListener("open", () => {
      setStatus("live", "live");
      if (dropped) refreshSide(true); // back after a restart: whatever was missed
      dropped = false;
    });
    es.addEventListener("error", () => {
      if (source !== es) return;
      dropped = true;
      if (es.readyState === EventSource.CLOSED) { // the server refused: retry ourselves
        setStatus("offline", "offline — retrying");
        reopenTimer = setTimeout(openStream, 3000);
      } else {
        setStatus("reconnecting", "reconnecting…");
      }
    });
  }

  async function reload() {
    const q = query();
    if (q === current) return;
    current = q;
    history.replaceState(null, "", `?${withKey(q)}`);
    lastSide = Date.now(); // the stream's first pulse must not load the side panels a second time
    openStream();
    try {
      const body = await getJson(`/v1/pulse?${q}`);
      if (current === q) renderPulse(body); // not when the view changed while it was on its way
    } catch (e) {
      if (current === q) setStatus("error", e.body && e.body.error ? e.body.error.message : e.message);
    }
    refreshSide(true);
  }

  function onSubmit(ev) {
    ev.preventDefault();
    if (!$("#controls").reportValidity()) return;
    readControls();
    reload();
  }

  /** The metric registry; the page waits for it (a server that is still starting is asked again). */
  async function loadRegistry() {
    for (;;) {
      try {
        useRegistry(await getJson("/v1/metrics"));
        return;
      } catch (e) {
        setStatus("offline", "cannot reach the service — retrying");
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
  }

  async function main() {
    await loadRegistry();
    buildTiles();
    fromLocation();
    writeControls();
    $("#controls").addEventListener("submit", onSubmit);
    $("#window").addEventListener("change", onSubmit);
    for (const f of FILTERS) $(`#${f}`).addEventListener("change", onSubmit);
    for (const id of ["oc-survey", "oc-window", "oc-horizon"]) $(`#${id}`).addEventListener("change", loadOutcomes);
    window.addEventListener("resize", () => {
      for (const [id, plot] of plots) {
        const w = $(`.tile[data-metric="${id}"] .spark`).clientWidth;
        if (w && w !== plot.width) plot.setSize({ width: w, height: 36 });
      }
    });
    await loadFeatures();
    loadSuggestions();
    await reload();
  }

  main();
})();
