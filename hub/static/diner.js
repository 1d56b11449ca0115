// The diner's page: the table button's calls, and what became of them, live.
"use strict";

const table = RFM.table;
const token = RFM.token;
let view = null;

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return table + "-w" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function expired() {
  const main = document.querySelector("main");
  main.replaceChildren(el("p", {class: "card error", role: "alert", text: t("code_expired")}));
}

async function send(msg) {
  const r = await api("POST", "/api/diner/" + encodeURIComponent(table) + "/call", msg, {"X-Table-Token": token});
  if (r.ok) {
    say("");
    render(r.data);
  } else if (r.status === 403) {
    expired();
  } else {
    say(r.data.error || t("send_failed"), true);
  }
}

function liveCall(type) {
  return view && view.calls.find((c) => c.type === type && (c.told === "seen" || c.told === "on_the_way"));
}

function render(data) {
  view = data;
  const buttons = data.types.map((type) => {
    const call = liveCall(type);
    return el("button", {type: "button", class: "call-button " + (call ? call.told : ""), dataset: {type},
                         onclick: () => send({id: newId(), action: "raise", type})},
      el("span", {class: "call-name", text: typeName(type)}),
      call ? el("span", {class: "call-state", text: t("told_" + call.told)}) : null);
  });
  document.getElementById("buttons").replaceChildren(...buttons);
  const items = data.calls.slice().reverse().map((c) => {
    const open = c.told === "seen" || c.told === "on_the_way";
    return el("li", {class: "diner-call " + c.told, dataset: {id: c.id, told: c.told}},
      el("span", {class: "call-name", text: typeName(c.type)}),
      el("span", {class: "told", text: t("told_" + c.told)}),
      c.by && c.told === "on_the_way" ? el("span", {class: "by", text: t("by_name", {name: c.by})}) : null,
      c.reminders ? el("span", {class: "muted", text: t("asked_again", {n: c.reminders})}) : null,
      el("span", {class: "age", dataset: {since: c.raised_at}}),
      open ? el("button", {type: "button", class: "cancel", text: t("cancel"),
                           onclick: () => send({id: c.id, action: "cancel"})}) : null);
  });
  if (!items.length) items.push(el("li", {class: "muted", text: t("no_calls")}));
  document.getElementById("calls").replaceChildren(...items);
  tick();
}

function tick() {
  for (const node of document.querySelectorAll("[data-since]")) {
    node.textContent = ago(serverNow() - Number(node.dataset.since));
  }
}

setInterval(tick, 1000);
live({v: "table", table, k: token}, {table: render, gone: expired});
