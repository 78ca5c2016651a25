/* The bridge's operator console (README "Console"). Plain DOM: every value from the API is put on the
   page with textContent or as an attribute value, never parsed as HTML. The key a user types lives in
   this closure only (never in storage, cookies or URLs) and goes out as the x-functions-key header;
   with Microsoft Entra ID, MSAL (vendored) signs the user in (authorization code + PKCE, redirect) and
   keeps its tokens in this tab's sessionStorage (MSAL's redirect flow needs a store that survives the
   redirect; gone when the tab closes, and at "Sign out"); the access token goes out as the
   Authorization header. Calls carry no
   cookies, so there is nothing for another site to ride on. */
"use strict";
(() => {
  const api = new URL(".", window.location.href); // the page is <prefix>/console: calls go to <prefix>/...
  let key = null;
  let token = null; // an Entra ID access token for the bridge (MSAL)
  let signIn = null; // MSAL's PublicClientApplication and the request it signs in with
  let me = null;
  let owner = "";
  let subsCursor = null;
  let current = null; // the subscription shown in detail
  let deliveriesCursor = null;
  let deliveries = [];

  const $ = (id) => document.getElementById(id);

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  function say(message, bad) {
    const status = $("status");
    status.textContent = message || "";
    status.className = bad ? "error" : "";
  }

  async function call(method, path, options) {
    const { params, body } = options || {};
    const url = new URL(path, api);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    else if (key) headers["x-functions-key"] = key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", redirect: "error",
    });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!response.ok) {
      const error = new Error(data && data.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function fill(dl, pairs) {
    dl.replaceChildren();
    for (const [name, value] of pairs) {
      dl.append(el("dt", name), el("dd", value === null || value === undefined || value === "" ? "—" : value));
    }
  }

  function when(value) { return value ? String(value).replace("T", " ").replace(/\.\d+Z$/, "Z") : "—"; }

  function target(sub) {
    const t = sub.target || {};
    if (t.url) return t.url;
    if (t.queue) return `Service Bus queue ${t.queue}`;
    if (t.topic) return `Service Bus topic ${t.topic}`;
    return JSON.stringify(t);
  }

  // Sign-in ------------------------------------------------------------------------------------
  async function startEntra(entra) {
    if (!entra || !window.msal) return;
    const app = new window.msal.PublicClientApplication({
      auth: { clientId: entra.client_id, authority: entra.authority, knownAuthorities: [entra.known_authority],
              redirectUri: window.location.origin + window.location.pathname },
      cache: { cacheLocation: "sessionStorage" },
    });
    await app.initialize();
    signIn = { app, request: { scopes: entra.scopes } };
    const result = await app.handleRedirectPromise();
    if (result && result.accessToken) {
      token = result.accessToken;
      return;
    }
    const [account] = app.getAllAccounts();
    if (account) { // signed in earlier in this tab: a cached token, or a silent renewal
      try { token = (await app.acquireTokenSilent({ ...signIn.request, account })).accessToken; } catch (_) { token = null; }
    }
  }

  async function start() {
    let config = { management_auth: "function_key" };
    try { config = await call("GET", "console/config"); } catch (_) { /* the defaults */ }
    try {
      if (!token) await startEntra(config.entra);
    } catch (error) {
      say(`Microsoft sign-in failed: ${error.errorCode || error.message}`, true);
    }
    try {
      me = await call("GET", "me");
    } catch (error) {
      if (error.status === 401 || error.status === 403) return askKey(config);
      return say(`The bridge did not answer: ${error.message}`, true);
    }
    return signedIn();
  }

  function askKey(config) {
    const why = {
      function_key: "This bridge takes a function key (Function App → App keys). It stays in this tab's memory only.",
      both: "This bridge takes Microsoft Entra ID tokens or its management key; enter the management key. It stays in this tab's memory only.",
      entra: "Sign in with your work account.",
    }[config.management_auth] || "Enter a key.";
    $("sign-in-why").textContent = config.management_auth === "both" && signIn
      ? "Sign in with your work account, or enter the bridge's management key (it stays in this tab's memory only)."
      : why;
    $("key-form").hidden = config.management_auth === "entra";
    $("entra-sign-in").hidden = !signIn;
    $("sign-in").hidden = false;
    $("key").focus();
  }

  async function submitKey(event) {
    event.preventDefault();
    const input = $("key");
    key = input.value;
    input.value = "";
    try {
      me = await call("GET", "me");
    } catch (error) {
      key = null;
      return say(error.status === 401 || error.status === 403 ? "That key was not accepted." : `Sign-in failed: ${error.message}`, true);
    }
    $("sign-in").hidden = true;
    return signedIn();
  }

  function signOut() {
    if (token && signIn) signIn.app.clearCache().catch(() => undefined);
    key = null; token = null; me = null; current = null;
    for (const id of ["subscriptions", "detail", "health", "sign-out"]) $(id).hidden = true;
    $("who").textContent = "";
    $("subs-table").tBodies[0].replaceChildren();
    say("Signed out.");
    start();
  }

  async function signedIn() {
    say("");
    $("sign-in").hidden = true;
    const who = me.kind === "entra" ? (me.name || me.object_id) : (me.kind === "management_key" ? "management key" : "function key");
    $("who").textContent = `${who}${me.admin ? " · admin" : ""}`;
    $("sign-out").hidden = !key && !token;
    $("subscriptions").hidden = false;
    $("owner-form").hidden = !me.admin || me.kind !== "entra";
    if (me.admin) loadHealth();
    await loadSubscriptions(true);
  }

  // Health (admins) ---------------------------------------------------------------------------
  async function loadHealth() {
    try {
      const health = await call("GET", "health");
      fill($("health-checks"), [["status", health.status], ...Object.entries(health.checks || {})]);
    } catch (error) {
      fill($("health-checks"), [["status", `unhealthy (${error.message})`]]);
    }
    try {
      const status = await call("GET", "status");
      const last = status.last_reconcile;
      fill($("bridge-status"), [
        ["retry backlog (pending)", status.deliveries.pending], ["dead (kept for replay)", status.deliveries.dead],
        ["Calendly accounts", (status.accounts || []).join(", ")],
        ["last reconcile", last ? `${when(last.finished_at)}: ${last.checked} checked, ${last.healthy} healthy, `
          + `${last.recreated} recreated, ${last.deleted} deleted, ${last.orphans_deleted} orphans deleted, `
          + `${last.leftover} left for the next run, ${(last.errors || []).length} errors` : "not yet"],
        ...((last && last.errors) || []).map((e) => [`error ${e.code}`, e.message]),
      ]);
      $("preflight-buttons").replaceChildren(...(status.accounts || []).map((name) => {
        const button = el("button", `Check the token of ${name}`, { type: "button" });
        button.addEventListener("click", () => checkToken(name));
        return button;
      }));
    } catch (error) {
      fill($("bridge-status"), [["status", `unavailable (${error.message})`]]);
    }
    $("health").hidden = false;
  }

  async function checkToken(name) {
    fill($("preflight"), [["account", name], ["result", "checking… (creates and at once deletes one hook per event family)"]]);
    try {
      const report = await call("POST", `accounts/${encodeURIComponent(name)}/preflight`);
      const token = report.token || {};
      fill($("preflight"), [
        ["account", name], ["result", report.ok ? "ok" : "needs attention"],
        ["token of", [token.name, token.email, token.role].filter(Boolean).join(", ")],
        ...Object.entries(report.checks || {}).map(([scope, check]) => [scope, check.status + (check.message ? `: ${check.message}` : "")]),
        ...Object.entries(report.families || {}).map(([family, result]) => [`${family} events`,
          result.status + (result.needs ? ` (needs ${result.needs.join(", ")})` : "")]),
        ...((report.left_behind || []).length ? [["hooks left behind", report.left_behind.join(", ")]] : []),
      ]);
    } catch (error) {
      fill($("preflight"), [["account", name], ["result", `failed: ${error.message}`]]);
    }
  }

  // Subscriptions ------------------------------------------------------------------------------
  async function loadSubscriptions(fresh) {
    const body = $("subs-table").tBodies[0];
    if (fresh) { body.replaceChildren(); subsCursor = null; }
    let page;
    try {
      page = await call("GET", "subscriptions", { params: { limit: 50, cursor: subsCursor, owner } });
    } catch (error) {
      return say(`Could not list subscriptions: ${error.message}`, true);
    }
    for (const sub of page.value || []) body.append(subscriptionRow(sub));
    subsCursor = page.next_cursor || null;
    $("more-subs").hidden = !subsCursor;
    if (fresh && !(page.value || []).length) say("No subscriptions yet.");
    return undefined;
  }

  function subscriptionRow(sub) {
    const row = el("tr", null, { class: "pick", tabindex: "0", "data-id": sub.id });
    row.append(el("td", sub.id), el("td", (sub.events || []).join(", ")),
      el("td", sub.scope + (sub.user ? ` ${sub.user}` : "") + (sub.group ? ` ${sub.group}` : "")),
      el("td", sub.account || "default"), el("td", sub.state), el("td", target(sub)), el("td", when(sub.created_at)));
    const open = () => openSubscription(sub.id, row);
    row.addEventListener("click", open);
    row.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(); } });
    return row;
  }

  async function openSubscription(id, row) {
    for (const other of document.querySelectorAll("#subs-table tr.selected")) other.classList.remove("selected");
    if (row) row.classList.add("selected");
    try {
      current = await call("GET", `subscriptions/${encodeURIComponent(id)}`);
    } catch (error) {
      return say(`Could not read the subscription: ${error.message}`, true);
    }
    const owner = current.owner ? `${current.owner.name || ""} (${current.owner.object_id})`.trim() : null;
    fill($("detail-fields"), [
      ["id", current.id], ["events", (current.events || []).join(", ")], ["scope", current.scope],
      ["user", current.user], ["group", current.group], ["account", current.account], ["state", current.state],
      ["Calendly hook", current.calendly_webhook], ["target", target(current)], ["owner", owner],
      ["payload", current.payload], ["created", when(current.created_at)], ["updated", when(current.updated_at)],
      ...(current.filter_counts ? [["filters matched / left out",
        `${current.filter_counts.matched} / ${current.filter_counts.filtered_out}`]] : []),
    ]);
    $("detail").hidden = false;
    $("payload").hidden = true;
    await loadDeliveries(true);
    return undefined;
  }

  // Deliveries ---------------------------------------------------------------------------------
  async function loadDeliveries(fresh) {
    const body = $("deliveries-table").tBodies[0];
    if (fresh) { body.replaceChildren(); deliveriesCursor = null; deliveries = []; }
    let page;
    try {
      page = await call("GET", `subscriptions/${encodeURIComponent(current.id)}/deliveries`,
        { params: { limit: 100, cursor: deliveriesCursor } });
    } catch (error) {
      return say(`Could not list deliveries: ${error.message}`, true);
    }
    for (const delivery of page.value || []) { deliveries.push(delivery); body.append(deliveryRow(delivery)); }
    deliveriesCursor = page.next_cursor || null;
    $("more-deliveries").hidden = !deliveriesCursor;
    const counts = {};
    for (const d of deliveries) counts[d.status] = (counts[d.status] || 0) + 1;
    const last = deliveries.reduce((latest, d) => (d.created_at > latest ? d.created_at : latest), "");
    $("counts").textContent = deliveries.length
      ? `${Object.entries(counts).map(([status, n]) => `${status}: ${n}`).join(" · ")}${deliveriesCursor ? " (so far)" : ""}`
        + ` · last event ${when(last)}`
      : "No deliveries kept (the README says how long they are).";
    return undefined;
  }

  function deliveryRow(delivery) {
    const row = el("tr", null, { "data-id": delivery.id });
    row.append(el("td", delivery.event), el("td", delivery.status, { class: `status-${delivery.status}` }),
      el("td", delivery.attempts), el("td", delivery.last_status ?? "—"), el("td", delivery.last_error ?? "—"),
      el("td", when(delivery.updated_at)));
    const actions = el("td");
    const show = el("button", "Payload", { type: "button", "aria-label": `Show the payload of delivery ${delivery.id}` });
    show.addEventListener("click", () => showPayload(delivery.id));
    actions.append(show);
    if (delivery.status === "dead" || delivery.status === "delivered") {
      const replay = el("button", "Replay", { type: "button", "aria-label": `Replay delivery ${delivery.id}` });
      replay.addEventListener("click", () => replayDelivery(delivery.id));
      actions.append(" ", replay);
    }
    row.append(actions);
    return row;
  }

  async function showPayload(id) {
    let cursor = null;
    for (let page = 0; page < 50; page += 1) {
      let found;
      try {
        found = await call("GET", `subscriptions/${encodeURIComponent(current.id)}/deliveries`,
          { params: { include: "payload", limit: 100, cursor } });
      } catch (error) {
        return say(`Could not read the payload: ${error.message}`, true);
      }
      const delivery = (found.value || []).find((d) => d.id === id);
      if (delivery) {
        let text = delivery.payload;
        try { text = JSON.stringify(JSON.parse(delivery.payload), null, 2); } catch (_) { /* shown as it is */ }
        $("payload-text").textContent = text;
        $("payload-title").textContent = `Payload of ${id}`;
        $("payload").hidden = false;
        $("payload-text").focus();
        return undefined;
      }
      cursor = found.next_cursor;
      if (!cursor) break;
    }
    return say("That delivery is gone (purged after its retention time).", true);
  }

  async function replayDelivery(id) {
    try {
      const result = await call("POST", `deliveries/${encodeURIComponent(id)}/replay`);
      say(`Replayed: ${result.status}${result.last_status ? ` (target answered ${result.last_status})` : ""}.`, result.status !== "delivered");
    } catch (error) {
      say(`Replay failed: ${error.message}`, true);
    }
    await loadDeliveries(true);
  }

  async function checkHook() {
    try {
      const hook = await call("GET", `subscriptions/${encodeURIComponent(current.id)}/hook`);
      say(`Calendly hook: ${hook.state}${hook.retry_started_at ? ` (Calendly retrying since ${when(hook.retry_started_at)})` : ""}`
        + `${hook.state === "active" ? "" : " — reconcile recreates it on its next run"}.`, hook.state !== "active");
    } catch (error) {
      say(`Could not ask Calendly: ${error.message}`, true);
    }
  }

  async function sendTest() {
    try {
      await call("POST", `subscriptions/${encodeURIComponent(current.id)}/test`);
      say("Test event sent.");
    } catch (error) {
      say(`Test event failed: ${error.message}`, true);
    }
    await loadDeliveries(true);
  }

  async function unsubscribe() {
    if (!window.confirm(`Unsubscribe ${current.id}? Its Calendly hook and delivery log are deleted; the flow stops.`)) return;
    const gone = current.id;
    try {
      await call("DELETE", `subscriptions/${encodeURIComponent(gone)}`);
    } catch (error) {
      say(`Unsubscribe failed: ${error.message}`, true);
      return;
    }
    current = null;
    $("detail").hidden = true;
    await loadSubscriptions(true);
    say(`Unsubscribed ${gone}.`);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", submitKey);
    $("entra-sign-in").addEventListener("click", () => {
      signIn.app.loginRedirect(signIn.request).catch((error) => say(`Microsoft sign-in failed: ${error.errorCode || error.message}`, true));
    });
    $("sign-out").addEventListener("click", signOut);
    $("more-subs").addEventListener("click", () => loadSubscriptions(false));
    $("more-deliveries").addEventListener("click", () => loadDeliveries(false));
    $("test-event").addEventListener("click", sendTest);
    $("check-hook").addEventListener("click", checkHook);
    $("unsubscribe").addEventListener("click", unsubscribe);
    $("owner-form").addEventListener("submit", (event) => {
      event.preventDefault();
      owner = $("owner").value.trim();
      loadSubscriptions(true);
    });
    start();
  });
})();
