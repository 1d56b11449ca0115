// The manager's dashboard: floor map, waiters, kitchen, devices (live), charts (every minute).
"use strict";

const state = {floor: null, staff: null, kitchen: null, devices: null};
let range = "today";

function level(now, warnAt, lateAt) {
  return now >= lateAt ? 2 : now >= warnAt ? 1 : 0;
}

function drawFloor() {
  const floor = state.floor;
  const tile = (table) => {
    const data = floor.tables[table] || {calls: [], orders: []};
    return el("div", {class: "table-tile" + (data.calls.length ? " busy" : ""), dataset: {table}},
      el("b", {class: "tname", text: table}),
      data.calls.map((c) => el("div", {class: "tcall " + c.state + (c.escalated ? " escalated" : ""),
                                       dataset: {id: c.id, raised: c.raised_at, warn: c.warn_at, late: c.late_at}},
        el("span", {text: typeName(c.type)}),
        el("span", {class: "muted", text: c.waiter || "–"}),
        el("span", {class: "age"}))),
      data.orders.map((o) => el("div", {class: "torder " + o.status, text: "#" + o.number + " " + t("status_" + o.status)})));
  };
  const groups = floor.sections.map((s) => el("div", {class: "section"},
    el("h3", {text: t("section_n", {name: s.name})}), el("div", {class: "tables"}, s.tables.map(tile))));
  if (floor.unplaced.length) {
    groups.push(el("div", {class: "section"}, el("h3", {text: t("unplaced")}),
      el("div", {class: "tables"}, floor.unplaced.map(tile))));
  }
  document.getElementById("floor").replaceChildren(...groups);
}

function meter(share) {
  const bar = el("i");
  bar.style.width = Math.min(100, Math.round(100 * share)) + "%";
  return bar;
}

function drawStaff() {
  const staff = state.staff;
  document.getElementById("staff").replaceChildren(...staff.waiters.map((w) => {
    const load = w.tasks.length;
    return el("li", {class: "waiter" + (w.on_duty ? "" : " off") + (load >= staff.max_tasks ? " full" : ""),
                     dataset: {waiter: w.id}},
      el("div", {class: "wline"},
        el("span", {class: "dot " + (w.online ? "ok" : "bad"), title: t(w.online ? "online" : "offline")}),
        el("b", {text: w.name}),
        el("span", {class: "muted", text: t("role_" + w.role) + " · " + w.pager}),
        el("span", {class: "muted", text: t(w.on_duty ? "on_duty" : "off_duty_short")}),
        el("span", {class: "load", text: t("load", {n: load, max: staff.max_tasks})})),
      el("div", {class: "meter"}, meter(load / staff.max_tasks)),
      el("div", {class: "chips"}, w.tasks.map((task) => el("span", {class: "chip " + task.state,
                                                                    text: task.table + " " + typeName(task.type)}))));
  }));
}

function drawKitchen() {
  const k = state.kitchen;
  document.getElementById("orders").textContent = Object.entries(k.orders)
    .map(([status, n]) => n + " " + t("status_" + status)).join(" · ");
  document.getElementById("kitchen").replaceChildren(...k.stations.map((s) => el("div", {class: "kstation"},
    el("h3", {text: s.label + " (" + s.tickets.length + ")" + (s.expo ? " · " + t("expo") : "")}),
    el("ul", {class: "ktickets"}, s.tickets.map((ticket) => el("li", {
      class: "kticket" + (ticket.changed ? " changed" : ""),
      dataset: {id: ticket.id, opened: ticket.opened_at, warn: s.warn, late: s.late}},
    el("b", {text: "#" + (ticket.num || ticket.order)}),
    ticket.table ? el("span", {class: "muted", text: ticket.table}) : null,
    el("span", {class: "kitems", text: ticket.items}),
    ticket.allergy ? el("span", {class: "allergy-flag " + (ticket.allergy_ack ? "acked" : "open"),
                                 title: ticket.allergy, text: "⚠ " + t("allergy")}) : null,
    el("span", {class: "timer"})))))));
}

function drawDevices() {
  const d = state.devices;
  const head = el("tr", {}, ["kind", "device", "state", "battery", "signal", "firmware", "last_seen", "alerts"]
    .map((key) => el("th", {text: t(key)})));
  const rows = d.devices.map((dev) => el("tr", {class: dev.online ? "" : "off", dataset: {device: dev.kind + "/" + dev.id}},
    el("td", {text: dev.kind}), el("td", {text: dev.id}),
    el("td", {class: dev.online ? "ok" : "bad", text: t(dev.online ? "online" : "offline")}),
    el("td", {class: dev.battery !== null && dev.battery < d.low_battery ? "bad" : "",
              text: dev.battery === null ? "–" : dev.battery + "%"}),
    el("td", {text: dev.rssi === null ? "–" : dev.rssi + " dBm"}),
    el("td", {text: dev.fw || "–"}),
    el("td", {class: "seen", dataset: {seen: dev.last_seen || ""}}),
    el("td", {class: dev.alerts.length ? "bad" : "", text: dev.alerts.map(typeName).join(", ")})));
  document.getElementById("devices").replaceChildren(el("table", {class: "grid"}, el("thead", {}, head),
    el("tbody", {}, rows)));
}

function tick() {
  const now = serverNow();
  for (const node of document.querySelectorAll(".table-tile")) {
    let worst = -1;
    for (const c of node.querySelectorAll(".tcall")) {
      const lvl = c.classList.contains("escalated") ? 2 : level(now, Number(c.dataset.warn), Number(c.dataset.late));
      c.querySelector(".age").textContent = ago(now - Number(c.dataset.raised));
      c.dataset.level = lvl;
      worst = Math.max(worst, lvl);
    }
    node.dataset.level = worst;
  }
  for (const node of document.querySelectorAll(".kticket")) {
    const age = now - Number(node.dataset.opened);
    node.querySelector(".timer").textContent = clock(age);
    node.dataset.level = age >= Number(node.dataset.late) ? 2 : age >= Number(node.dataset.warn) ? 1 : 0;
  }
  for (const node of document.querySelectorAll("td.seen")) {
    node.textContent = node.dataset.seen ? ago(now - Number(node.dataset.seen)) : "–";
  }
}

// --- charts --------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// rows: [{label, a, b}] drawn as bars: b (light, e.g. p90) behind a (dark, e.g. median).
function barChart(title, rows, unit) {
  const box = el("figure", {class: "chart"}, el("figcaption", {text: title}));
  if (!rows.length) {
    box.append(el("p", {class: "muted", text: t("no_data")}));
    return box;
  }
  const rowH = 20, labelW = 110, width = 420, barW = width - labelW - 50;
  const max = Math.max(...rows.map((r) => Math.max(r.a || 0, r.b || 0)), 1);
  const chart = svg("svg", {viewBox: `0 0 ${width} ${rows.length * rowH + 4}`, width: "100%", role: "img",
                            "aria-label": title});
  rows.forEach((r, i) => {
    const y = i * rowH + 2;
    chart.append(svg("text", {x: labelW - 6, y: y + 14, "text-anchor": "end", class: "lbl"}, r.label));
    if (r.b !== undefined && r.b !== null) {
      chart.append(svg("rect", {x: labelW, y: y + 3, width: barW * r.b / max, height: rowH - 6, class: "bar-b"}));
    }
    chart.append(svg("rect", {x: labelW, y: y + 3, width: barW * (r.a || 0) / max, height: rowH - 6, class: "bar-a"}));
    const shown = r.b !== undefined && r.b !== null ? `${fmt(r.a)} / ${fmt(r.b)}` : fmt(r.a);
    chart.append(svg("text", {x: labelW + barW * Math.max(r.a || 0, r.b || 0) / max + 4, y: y + 14, class: "val"},
                     shown + (unit || "")));
  });
  box.append(chart);
  return box;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  return v >= 10 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
}

function nameOf(id) {
  const w = state.staff && state.staff.waiters.find((x) => x.id === id);
  return w ? w.name : id;
}

function ackRows(groups, label) {
  return Object.entries(groups).filter(([, g]) => g.raise_to_ack_s.n)
    .map(([k, g]) => ({label: label ? label(k) : k, a: g.raise_to_ack_s.p50, b: g.raise_to_ack_s.p90}));
}

function prepRows(groups, label) {
  return Object.entries(groups).map(([k, s]) => ({label: label ? label(k) : k, a: s.p50 / 60, b: s.p90 / 60}));
}

function escRows(groups, label) {
  return Object.entries(groups).filter(([, g]) => g.escalations.total)
    .map(([k, g]) => ({label: label ? label(k) : k, a: g.escalations.total}));
}

function since() {
  const now = new Date();
  if (range === "today") return new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime() / 1000;
  return now.getTime() / 1000 - 7 * 86400;
}

async function loadCharts() {
  const q = "?since=" + Math.floor(since());
  document.getElementById("csv-calls").href = "/export/calls.csv" + q;
  document.getElementById("csv-tickets").href = "/export/tickets.csv" + q;
  const [calls, prep] = await Promise.all([api("GET", "/api/metrics" + q), api("GET", "/api/metrics/kitchen" + q)]);
  if (!calls.ok || !prep.ok) return;
  const c = calls.data, k = prep.data;
  const stationLabel = (name) => {
    const s = state.kitchen && state.kitchen.stations.find((x) => x.station === name);
    return s ? s.label : name;
  };
  document.getElementById("charts").replaceChildren(
    el("p", {class: "muted legend", text: t("calls_n", {n: c.all.calls}) + " · ▮ " + t("median") + " ▯ " + t("p90")}),
    barChart(t("chart_ack_waiter"), ackRows(c.by_waiter, nameOf), "s"),
    barChart(t("chart_ack_type"), ackRows(c.by_type, typeName), "s"),
    barChart(t("chart_ack_table"), ackRows(c.by_table), "s"),
    barChart(t("chart_ack_hour"), ackRows(c.by_hour, (h) => h + ":00"), "s"),
    barChart(t("chart_prep_station"), prepRows(k.by_station, stationLabel), "m"),
    barChart(t("chart_prep_item"), prepRows(k.by_item), "m"),
    barChart(t("chart_prep_daypart"), prepRows(k.by_daypart, (d) => t("daypart_" + d)), "m"),
    barChart(t("chart_esc_waiter"), escRows(c.by_waiter, nameOf)),
    barChart(t("chart_esc_type"), escRows(c.by_type, typeName)));
}

for (const button of document.querySelectorAll("[data-range]")) {
  button.addEventListener("click", () => {
    range = button.dataset.range;
    for (const b of document.querySelectorAll("[data-range]")) b.classList.toggle("on", b === button);
    loadCharts();
  });
}

const draw = {floor: drawFloor, staff: drawStaff, kitchen: drawKitchen, devices: drawDevices};
const handlers = {};
for (const [name, fn] of Object.entries(draw)) {
  handlers[name] = (data) => {
    state[name] = data;
    fn();
    tick();
  };
}
const drawStaffOnly = handlers.staff;
handlers.staff = (data) => {
  const first = !state.staff;
  drawStaffOnly(data);
  if (first) loadCharts(); // the charts name waiters
};
live({v: "dashboard"}, handlers);
setInterval(tick, 1000);
setInterval(loadCharts, 60000);
