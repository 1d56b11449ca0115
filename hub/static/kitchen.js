// The web kitchen display: the very tickets payload the hub sends this display, with the
// same timers, allergy banners, bump and recall as the firmware.
"use strict";

const device = RFM.device;
let view = null;

async function send(id, action) {
  const r = await api("POST", "/api/kitchen/" + encodeURIComponent(device) + "/bump", {id, action});
  say(r.ok ? "" : r.data.error, !r.ok);
}

function card(ticket, snap, expo) {
  const allergy = ticket.allergy ? el("div", {class: "allergy " + (ticket.allergy_ack ? "acked" : "open")},
    el("b", {text: "⚠ " + t("allergy") + ": "}), ticket.allergy,
    ticket.allergy_ack ? el("div", {class: "small", text: "✓ " + t("allergy_acked")})
      : el("button", {type: "button", class: "ack-allergy", text: t("ack_allergy"),
                      onclick: () => send(ticket.id, "allergy_ack")})) : null;
  const items = ticket.items.map((item) => el("li", {class: (item.void ? "void " : "") + (item.changed ? "changed" : "")},
    el("span", {class: "qty", text: item.qty + "×"}), " ", el("span", {class: "dish", text: item.name}),
    item.mods && item.mods.length ? el("ul", {class: "mods"}, item.mods.map((m) => el("li", {text: m}))) : null));
  const blocked = ticket.allergy && !ticket.allergy_ack;
  const also = ticket.also && ticket.also.length
    ? el("p", {class: "also", text: t(expo ? "cooking_at" : "also", {stations: ticket.also.join(", ")})}) : null;
  return el("article", {class: "ticket" + (ticket.changed ? " changed" : ""), dataset: {id: ticket.id, age: ticket.age}},
    el("header", {},
      el("span", {class: "num", text: "#" + (ticket.num || ticket.order)}),
      ticket.table ? el("span", {class: "table", text: ticket.table}) : null,
      el("span", {class: "ch", text: ticket.ch}),
      ticket.changed ? el("span", {class: "chg", text: t("changed")}) : null,
      el("span", {class: "timer"})),
    allergy,
    el("ul", {class: "items"}, items),
    ticket.note ? el("p", {class: "note", text: t("note") + ": " + ticket.note}) : null,
    also,
    el("button", {type: "button", class: "bump primary", disabled: blocked, text: t(expo ? "hand_over" : "bump"),
                  onclick: () => send(ticket.id, "bump")}));
}

function render(data) {
  view = data;
  document.getElementById("station").textContent = (data.label || "") + " · " + data.device;
  const box = document.getElementById("tickets");
  const snap = data.snapshot;
  if (!snap) {
    box.replaceChildren(el("p", {class: "muted", text: t("waiting_hub")}));
    return;
  }
  const cards = snap.tickets.map((ticket) => card(ticket, snap, data.expo));
  if (!cards.length) cards.push(el("p", {class: "muted empty", text: t("no_tickets")}));
  if (snap.more) cards.push(el("p", {class: "more", text: t("more_tickets", {n: snap.more})}));
  box.replaceChildren(...cards);
  document.getElementById("count").textContent = snap.tickets.length + (snap.more || 0);
  tick();
}

function tick() {
  if (!view || !view.snapshot) return;
  const snap = view.snapshot;
  const extra = serverNow() - view.sent_at;
  for (const node of document.querySelectorAll(".ticket[data-age]")) {
    const age = Number(node.dataset.age) + extra;
    node.querySelector(".timer").textContent = clock(age);
    const warn = snap.warn === undefined ? 300 : snap.warn;
    const late = snap.late === undefined ? 480 : snap.late;
    node.classList.toggle("warn", age >= warn && age < late);
    node.classList.toggle("late", age >= late);
  }
}

document.getElementById("recall").addEventListener("click", () => send("last", "recall"));
setInterval(tick, 1000);
live({v: "kds", device}, {kds: render});
