// The ops dashboard: counts per status on the lifecycle graph, orders at
// risk, the live feed of every event (the `*` subscription) and any order's
// history. Counts and risks are read from the API; the feed says when to
// read them again.
"use strict";

(() => {
  const FEED_MAX = 200;
  const REFRESH_MS = 5000;
  const PING_MS = 25000;
  const $ = (id) => document.getElementById(id);
  const setText = (el, value) => { if (el.textContent !== value) el.textContent = value; };
  const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

  const params = new URLSearchParams(location.search);
  let token = params.get("token");
  if (token) {
    try { sessionStorage.setItem("ordercast.ops.token", token); } catch (_) { /* private mode */ }
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  } else {
    try { token = sessionStorage.getItem("ordercast.ops.token"); } catch (_) { token = null; }
  }
  const state = { socket: null, attempts: 0, feed: 0, soon: null, risks: [], pinger: null, refused: false };

  function showLink(kind, words) {
    const el = $("link");
    el.dataset.state = kind;
    setText(el, words);
  }

  function refuse() {
    // a token that is not an ops one (or has expired) stays so: stop asking
    state.refused = true;
    showLink("refused", "This link does not carry an ops token");
    if (state.socket) state.socket.close();
  }

  async function api(path) {
    const answer = await fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (answer.status === 401 || answer.status === 403) {
      refuse();
      throw new Error("refused");
    }
    if (!answer.ok) throw new Error(String(answer.status));
    return answer.json();
  }

  // counts and risks

  async function refresh() {
    try {
      const [counts, risks] = await Promise.all([api("/ops/counts"), api("/ops/at-risk")]);
      for (const [status, count] of Object.entries(counts.counts)) {
        const el = $("count-" + status);
        if (el) setText(el, String(count));
      }
      setText($("counts-at"), "as of " + clock.format(new Date(counts.at)));
      state.risks = risks.orders;
      drawRisks();
    } catch (_) { /* shown by the link state; tried again on the next tick */ }
  }

  function refreshSoon() {
    // many events in a burst cost one read
    if (state.soon) return;
    state.soon = setTimeout(() => { state.soon = null; refresh(); }, 500);
  }

  function drawRisks() {
    const rows = state.risks.map((risk) => {
      const left = risk.dueAt ? (new Date(risk.dueAt) - Date.now()) / 1000 : null;
      const passed = risk.passed || (left !== null && left <= 0);
      const due = passed ? "passed" : "in " + Math.max(0, Math.round(left)) + " s";
      return `<tr><td>${orderButton(risk.orderId)}</td><td class="status">${esc(risk.status)}</td>` +
        `<td>${esc(risk.deadline)}</td><td class="${passed ? "passed" : "near"}">${due}</td></tr>`;
    });
    const html = rows.join("");
    if ($("risk").innerHTML !== html) $("risk").innerHTML = html;
    $("risk-empty").hidden = rows.length > 0;
  }

  // the live feed

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + "/ws?" + new URLSearchParams({ token, lang: "en" }));
    state.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ action: "subscribe", orderId: "*" }));
    socket.onmessage = (message) => receive(JSON.parse(message.data));
    socket.onclose = async () => {
      if (state.socket !== socket) return;
      clearInterval(state.pinger);
      state.socket = null;
      // a failed handshake tells a browser nothing; the API says whether the
      // token is refused (api() then calls refuse()) or the server is away
      if (!state.refused) await refresh();
      if (state.refused) return;
      showLink("lost", "Feed lost. Reconnecting…");
      state.attempts += 1;
      const wait = Math.min(10000, 400 * 1.8 ** Math.min(state.attempts, 8));
      setTimeout(connect, wait * (0.6 + Math.random() * 0.4));
    };
  }

  function receive(frame) {
    if (frame.type === "subscribed") {
      state.attempts = 0;
      showLink("live", "Live");
      clearInterval(state.pinger);
      state.pinger = setInterval(() => {
        if (state.socket && state.socket.readyState === 1) state.socket.send('{"action":"ping"}');
      }, PING_MS);
      refresh(); // whatever happened while the feed was down
    } else if (frame.type === "order.event") {
      addToFeed(frame);
      refreshSoon();
      if ($("history-id").value === frame.orderId) showHistory(frame.orderId);
    } else if (frame.type === "error" && (frame.code === "forbidden" || frame.code === "unauthorized")) {
      refuse();
    }
  }

  function addToFeed(frame) {
    const li = document.createElement("li");
    li.dataset.orderId = frame.orderId;
    li.dataset.seq = String(frame.seq);
    li.innerHTML = `<time datetime="${esc(frame.at)}">${clock.format(new Date(frame.at))}</time>` +
      `<span>${orderButton(frame.orderId)}</span><span class="status">${esc(frame.status)}</span>` +
      `<span>${esc(frame.event)}</span>`;
    const feed = $("feed");
    feed.prepend(li);
    while (feed.childElementCount > FEED_MAX) feed.lastElementChild.remove();
    state.feed += 1;
    setText($("feed-count"), `(${state.feed} since this page opened; newest first)`);
    const node = document.getElementById("status-" + frame.status);
    if (node) {
      node.classList.add("flash");
      setTimeout(() => node.classList.remove("flash"), 600);
    }
  }

  // any order's history

  async function showHistory(orderId) {
    const note = $("history-note");
    try {
      const page = await api("/orders/" + encodeURIComponent(orderId) + "/events");
      const html = page.events.map((e) =>
        `<li data-seq="${e.seq}"><span>${e.seq}</span><time datetime="${esc(e.at)}">${clock.format(new Date(e.at))}</time>` +
        `<span class="status">${esc(e.status)}</span><span>${esc(e.event)}${detail(e.data)}</span></li>`).join("");
      if ($("history").innerHTML !== html) $("history").innerHTML = html;
      setText(note, `${page.events.length} events of ${orderId}`);
    } catch (error) {
      $("history").innerHTML = "";
      setText(note, error.message === "404" ? `No order ${orderId}` : "Could not read the history");
    }
  }

  function detail(data) {
    const parts = [];
    if (data.courierId) parts.push("courier " + data.courierId);
    if (data.reason) parts.push(data.reason);
    return parts.length ? ` <span class="muted">(${esc(parts.join(", "))})</span>` : "";
  }

  function orderButton(orderId) {
    return `<button type="button" class="order" data-order="${esc(orderId)}">${esc(orderId)}</button>`;
  }

  function esc(value) {
    return String(value).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.order");
    if (!button) return;
    $("history-id").value = button.dataset.order;
    showHistory(button.dataset.order);
    $("history-h").scrollIntoView({ block: "nearest" });
  });
  $("history-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const orderId = $("history-id").value.trim();
    if (orderId) showHistory(orderId);
  });

  if (!token) {
    showLink("refused", "Open this page with ?token=<an ops token>");
    return;
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
  setInterval(drawRisks, 1000);
  connect();
})();
