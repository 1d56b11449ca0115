// Shared by every page: the page's data (RFM), messages, the live stream, API calls, clocks.
"use strict";

const RFM = JSON.parse(document.getElementById("rfm").textContent);
let clockSkew = 0; // server clock minus this browser's, seconds

function t(key, args) {
  let text = RFM.t[key] !== undefined ? RFM.t[key] : key;
  for (const name in args || {}) text = text.split("{" + name + "}").join(args[name]);
  return text;
}

// el("li", {class: "x", text: "..", onclick: fn, dataset: {id: 1}}, child, ...)
function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const kid of kids.flat()) {
    if (kid !== null && kid !== undefined && kid !== false) node.append(kid);
  }
  return node;
}

function serverNow() {
  return Date.now() / 1000 + clockSkew;
}

// Seconds as the pager and the kitchen display show them: 45s, 3m, 1h05.
function ago(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m";
  return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0");
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

function setLink(text, bad) {
  const link = document.getElementById("link");
  if (!link) return;
  link.textContent = text;
  link.classList.toggle("bad", !!bad);
}

// One EventSource per page: handlers {view name: fn(data)}; gone() when access ended.
function live(query, handlers) {
  const source = new EventSource("/live?" + new URLSearchParams(query));
  source.addEventListener("clock", (e) => {
    clockSkew = JSON.parse(e.data).now - Date.now() / 1000;
  });
  for (const [name, fn] of Object.entries(handlers)) {
    if (name === "gone") continue;
    source.addEventListener(name, (e) => fn(JSON.parse(e.data)));
  }
  source.addEventListener("gone", () => {
    source.close();
    setLink(t("disconnected"), true);
    if (handlers.gone) handlers.gone();
  });
  source.onopen = () => setLink("● " + t("live"));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      setLink(t("disconnected"), true);
      if (handlers.gone) handlers.gone();
    } else {
      setLink(t("reconnecting"), true);
    }
  };
  return source;
}

// JSON API call with the session's CSRF token; resolves to {ok, status, data}.
async function api(method, url, body, headers) {
  const init = {method, headers: Object.assign({"Accept": "application/json"}, headers || {})};
  if (RFM.csrf) init.headers["X-CSRF-Token"] = RFM.csrf;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    const resp = await fetch(url, init);
    let data = {};
    try {
      data = await resp.json();
    } catch (err) {
      data = {error: resp.statusText};
    }
    return {ok: resp.ok, status: resp.status, data};
  } catch (err) {
    return {ok: false, status: 0, data: {error: t("send_failed")}};
  }
}

function say(text, bad) {
  const msg = document.getElementById("msg");
  if (!msg) return;
  msg.textContent = text || "";
  msg.classList.toggle("error", !!bad);
}

// Call fn every second (timers); also once now.
function everySecond(fn) {
  fn();
  return setInterval(fn, 1000);
}

function typeName(type) {
  const key = "type_" + type;
  return RFM.t[key] !== undefined ? t(key) : type;
}
