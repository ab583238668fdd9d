// The tracking page: one order, live, over ordercast's WebSocket protocol.
// It subscribes with `since` = the last seq it applied, so a reconnect misses
// no step and shows none twice; a status never goes backwards on screen.
"use strict";

(() => {
  const text = JSON.parse(document.getElementById("text").textContent);
  const body = document.body;
  const orderId = body.dataset.orderId;
  const lang = body.dataset.lang;
  const STEPS = ["RECEIVED", "ACCEPTED", "COURIER_ASSIGNED", "PICKED_UP", "IN_DELIVERY", "DELIVERED"];
  const FINAL = ["DELIVERED", "REJECTED", "CANCELLED", "FAILED"];
  const PING_MS = 25000;
  const $ = (id) => document.getElementById(id);

  const state = {
    lastSeq: 0, status: null, reachedAt: {}, seqs: [],
    shownSeq: 0, // seq of the status the timeline shows: it never goes back
    pickup: null, dropoff: null, courier: null, trail: [], eta: null,
    bounds: null, socket: null, attempts: 0, timer: null, pinger: null, done: false,
  };

  // the token: from the link, kept for this tab only, and taken out of the
  // address bar so it is not copied or shown on screen by accident
  const params = new URLSearchParams(location.search);
  const storageKey = "ordercast.token." + orderId;
  let token = params.get("token");
  if (token) {
    try { sessionStorage.setItem(storageKey, token); } catch (_) { /* private mode */ }
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  } else {
    try { token = sessionStorage.getItem(storageKey); } catch (_) { token = null; }
  }

  const clock = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });
  const fill = (template, values) => template.replace(/\{(\w+)\}/g, (_, k) => values[k] ?? "");
  const setText = (el, value) => { if (el.textContent !== value) el.textContent = value; };

  // connection state

  function showLink(kind) {
    const el = $("link");
    const words = {
      live: text["link.live"], connecting: text["link.connecting"], lost: text["link.lost"],
      offline: text["link.offline"], refused: text["link.refused"],
      missing: text["link.missing"], notfound: text["link.notfound"],
    };
    el.dataset.state = ["missing", "notfound"].includes(kind) ? "refused" : kind;
    setText(el, words[kind]);
  }

  async function check() {
    // a failed handshake tells a browser nothing; ask the API why
    try {
      const answer = await fetch("/orders/" + encodeURIComponent(orderId), {
        headers: { Authorization: "Bearer " + token }, cache: "no-store",
      });
      if (answer.status === 401 || answer.status === 403) return "refused";
      if (answer.status === 404) return "notfound";
      return "ok";
    } catch (_) {
      return "unreachable";
    }
  }

  function connect() {
    clearTimeout(state.timer);
    if (state.done || (state.socket && state.socket.readyState <= 1)) return;
    if (!navigator.onLine) { showLink("offline"); return; }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ token });
    if (new URLSearchParams(location.search).get("lang")) query.set("lang", lang);
    const socket = new WebSocket(scheme + "//" + location.host + "/ws?" + query);
    state.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ action: "subscribe", orderId, since: state.lastSeq }));
    };
    socket.onmessage = (message) => receive(JSON.parse(message.data));
    socket.onclose = () => closed(socket);
  }

  async function closed(socket) {
    if (state.socket !== socket) return;
    clearInterval(state.pinger);
    state.socket = null;
    if (state.done) return;
    if (!navigator.onLine) { showLink("offline"); return; }
    showLink("lost");
    state.attempts += 1;
    if (state.attempts % 3 === 0) {
      const verdict = await check();
      if (verdict === "refused" || verdict === "notfound") { stop(verdict); return; }
    }
    // back off, with jitter so that a restarted server is not hit all at once
    const wait = Math.min(10000, 400 * 1.8 ** Math.min(state.attempts, 8));
    state.timer = setTimeout(connect, wait * (0.6 + Math.random() * 0.4));
  }

  function stop(kind) {
    state.done = true;
    showLink(kind);
    if (state.socket) state.socket.close();
  }

  // frames

  function receive(frame) {
    if (frame.type === "subscribed") {
      state.attempts = 0;
      showLink("live");
      clearInterval(state.pinger);
      state.pinger = setInterval(() => {
        if (state.socket && state.socket.readyState === 1) state.socket.send('{"action":"ping"}');
      }, PING_MS);
      const snapshot = frame.snapshot;
      if ("eta" in snapshot) showEta(snapshot.eta);
      if (snapshot.courierPosition) moveCourier(snapshot.courierPosition);
      if (snapshot.seq >= state.shownSeq) {
        state.shownSeq = snapshot.seq;
        showStatus(snapshot.status);
      }
    } else if (frame.type === "order.event") {
      if (frame.seq <= state.lastSeq) return; // seen already: never twice
      state.lastSeq = frame.seq;
      state.seqs.push(frame.seq);
      body.dataset.seqs = state.seqs.join(",");
      applyEvent(frame);
    } else if (frame.type === "courier.location") {
      moveCourier(frame);
      if ("eta" in frame) showEta(frame.eta);
    } else if (frame.type === "error") {
      if (frame.code === "order_not_found") stop("notfound");
      else if (frame.code === "forbidden" || frame.code === "unauthorized") stop("refused");
    }
  }

  function applyEvent(frame) {
    const details = frame.data && frame.data.details;
    if (details) {
      state.pickup = point(details.pickup);
      state.dropoff = point(details.dropoff);
      drawPlaces();
    }
    if (!(frame.status in state.reachedAt)) state.reachedAt[frame.status] = frame.at;
    // history older than the snapshot fills in times, never the present
    if (frame.seq < state.shownSeq) return;
    state.shownSeq = frame.seq;
    setText($("message"), frame.message);
    showStatus(frame.status);
    if ("eta" in frame) showEta(frame.eta);
  }

  // timeline and ETA

  function showStatus(status) {
    state.status = status;
    const reached = STEPS.indexOf(status);
    const final = FINAL.includes(status) && status !== "DELIVERED";
    // for a final alternative, the last step reached is the one before it
    const lastDone = final ? lastReachedStep() : reached;
    for (const li of document.querySelectorAll("#steps li")) {
      const index = STEPS.indexOf(li.dataset.status);
      let kind = "todo";
      if (index < lastDone || (index === lastDone && status === "DELIVERED")) kind = "done";
      else if (index === lastDone) kind = final ? "stopped" : "current";
      if (li.dataset.state !== kind) li.dataset.state = kind;
      if (kind === "current") li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
      const at = state.reachedAt[li.dataset.status];
      const when = li.querySelector(".when");
      if (at && index <= lastDone) {
        setText(when, clock.format(new Date(at)));
        when.setAttribute("datetime", at);
      }
    }
    const finalEl = $("final");
    if (final) {
      setText(finalEl, text["final." + status]);
      finalEl.hidden = false;
    }
    if (FINAL.includes(status)) showEta(null);
  }

  function lastReachedStep() {
    let last = 0;
    STEPS.forEach((step, index) => { if (step in state.reachedAt) last = index; });
    return last;
  }

  function showEta(eta) {
    state.eta = eta;
    const el = $("eta");
    el.dataset.eta = eta || "";
    if (state.status === "DELIVERED") {
      const at = state.reachedAt.DELIVERED;
      setText(el, at ? fill(text["delivered.at"], { time: clock.format(new Date(at)) }) : text["step.DELIVERED"]);
      return;
    }
    if (!eta) { setText(el, FINAL.includes(state.status) ? "–" : text["eta.none"]); return; }
    const when = new Date(eta);
    const minutes = Math.round((when - Date.now()) / 60000);
    const soon = minutes <= 1 ? text["eta.now"] : fill(text["eta.in"], { minutes });
    setText(el, fill(text["eta.at"], { time: clock.format(when) }) + " · " + soon);
  }
  setInterval(() => { if (state.eta) showEta(state.eta); }, 30000);

  // map: restaurant, customer and courier on a plain projection, no tiles

  function point(value) {
    if (!value || typeof value.lat !== "number" || typeof value.lng !== "number") return null;
    return { lat: value.lat, lng: value.lng };
  }

  function project(p) {
    // equirectangular around the middle latitude: straight enough for a city
    const b = state.bounds;
    const k = Math.cos((b.midLat * Math.PI) / 180);
    const w = (b.maxLng - b.minLng) * k || 1e-6;
    const h = b.maxLat - b.minLat || 1e-6;
    const scale = Math.min(340 / w, 200 / h);
    const x = 200 + ((p.lng - (b.minLng + b.maxLng) / 2) * k) * scale;
    const y = 130 - (p.lat - (b.minLat + b.maxLat) / 2) * scale;
    return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  }

  function widen(p) {
    // bounds only grow, so markers never jump back and forth
    const b = state.bounds;
    if (!b) {
      state.bounds = { minLat: p.lat, maxLat: p.lat, minLng: p.lng, maxLng: p.lng, midLat: p.lat };
      return true;
    }
    const grown = p.lat < b.minLat || p.lat > b.maxLat || p.lng < b.minLng || p.lng > b.maxLng;
    b.minLat = Math.min(b.minLat, p.lat); b.maxLat = Math.max(b.maxLat, p.lat);
    b.minLng = Math.min(b.minLng, p.lng); b.maxLng = Math.max(b.maxLng, p.lng);
    b.midLat = (b.minLat + b.maxLat) / 2;
    return grown;
  }

  function drawPlaces() {
    if (!state.pickup || !state.dropoff) {
      setText($("map-note"), text["map.noplaces"]);
      return;
    }
    widen(state.pickup); widen(state.dropoff);
    redraw();
  }

  function redraw() {
    if (!state.bounds) return;
    const place = (id, p) => {
      const el = $(id);
      if (!p) return;
      const [x, y] = project(p);
      el.setAttribute("transform", "translate(" + x + " " + y + ")");
      el.setAttribute("visibility", "visible");
    };
    place("restaurant", state.pickup);
    place("customer", state.dropoff);
    if (state.pickup && state.dropoff) {
      const [x1, y1] = project(state.pickup);
      const [x2, y2] = project(state.dropoff);
      const route = $("route");
      route.setAttribute("x1", x1); route.setAttribute("y1", y1);
      route.setAttribute("x2", x2); route.setAttribute("y2", y2);
      route.setAttribute("visibility", "visible");
    }
    drawGrid();
    drawCourier();
    setText($("map-note"), state.courier ? "" : text["map.waiting"]);
  }

  function drawGrid() {
    const grid = $("grid");
    if (grid.childElementCount) return;
    for (let x = 40; x < 400; x += 40) grid.insertAdjacentHTML("beforeend", `<line x1="${x}" y1="0" x2="${x}" y2="260"/>`);
    for (let y = 40; y < 260; y += 40) grid.insertAdjacentHTML("beforeend", `<line x1="0" y1="${y}" x2="400" y2="${y}"/>`);
  }

  function moveCourier(position) {
    const p = point(position);
    if (!p) return;
    state.courier = p;
    const last = state.trail[state.trail.length - 1];
    if (!last || last.lat !== p.lat || last.lng !== p.lng) state.trail.push(p);
    if (state.trail.length > 500) state.trail.shift();
    if (widen(p)) redraw();
    else drawCourier();
    setText($("map-note"), "");
  }

  function drawCourier() {
    const el = $("courier");
    if (!state.courier || !state.bounds) return;
    const [x, y] = project(state.courier);
    // CSS transform, so that the marker glides between fixes
    el.style.transform = "translate(" + x + "px, " + y + "px)";
    el.dataset.lat = String(state.courier.lat);
    el.dataset.lng = String(state.courier.lng);
    if (el.getAttribute("visibility") !== "visible") {
      // appear in place, then glide: no slide in from a corner
      el.setAttribute("visibility", "visible");
      requestAnimationFrame(() => el.classList.add("moving"));
    }
    $("trail").setAttribute("points", state.trail.map((p) => project(p).join(",")).join(" "));
  }

  // start

  window.addEventListener("online", () => { state.attempts = 0; connect(); });
  window.addEventListener("offline", () => { showLink("offline"); if (state.socket) state.socket.close(); });

  (async () => {
    if (!token) { stop("missing"); return; }
    const verdict = await check();
    if (verdict === "refused" || verdict === "notfound") { stop(verdict); return; }
    connect();
  })();
})();
