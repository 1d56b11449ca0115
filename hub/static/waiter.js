// The waiter's phone: a virtual pager showing the very list the hub sends that pager.
"use strict";

let view = null;
let known = null; // task ids already seen, to buzz on new ones

function showPicker() {
  const picker = document.getElementById("picker");
  picker.hidden = false;
  picker.replaceChildren(el("h1", {text: t("who_are_you")}),
    ...RFM.staff.map((w) => el("button", {type: "button", class: "pick", dataset: {waiter: w.id},
                                          onclick: () => choose(w.id)},
      el("b", {text: w.name}), " ", el("span", {class: "muted", text: t("role_" + w.role) + " · " + w.pager}))));
}

async function choose(id) {
  const r = await api("POST", "/api/waiter/as", {waiter: id});
  if (!r.ok) {
    say(r.data.error, true);
    return;
  }
  location.reload();
}

// Leaving on purpose: the pager goes offline now (its calls move on) and raises no alert.
async function leave() {
  if (!confirm(t("leave_confirm"))) return;
  source.close();
  const r = await api("POST", "/api/waiter/bye", {});
  if (r.ok) location.href = "/";
  else say(r.data.error, true);
}

async function act(id, action) {
  const r = await api("POST", "/api/waiter/act", {id, action});
  say(r.ok ? "" : r.data.error, !r.ok);
}

function render(data) {
  view = data;
  const who = document.getElementById("who");
  if (!data.waiter) {
    who.replaceChildren();
    showPicker();
    return;
  }
  const w = data.waiter;
  who.replaceChildren(el("span", {}, el("b", {text: w.name}), " ",
    el("span", {class: "muted", text: t("role_" + w.role) + " · " + w.pager}), " ",
    el("span", {class: data.online ? "ok" : "bad", text: t(data.online ? "online" : "offline")}),
    RFM.pinned ? null : el("button", {type: "button", class: "small", text: t("change_waiter"), onclick: showPicker}),
    el("button", {type: "button", class: "small", id: "leave", text: t("leave"), onclick: leave})));
  document.getElementById("duty").hidden = data.on_duty;
  const ids = new Set(data.tasks.map((task) => task.id));
  if (known && [...ids].some((id) => !known.has(id)) && navigator.vibrate) navigator.vibrate([200, 100, 200]);
  known = ids;
  const items = data.tasks.map((task) => el("li", {class: "task " + task.state + " kind-" + task.kind,
                                                   dataset: {id: task.id, age: task.age}},
    el("div", {class: "task-head"},
      el("span", {class: "task-table", text: task.table}),
      el("span", {class: "task-type", text: typeName(task.type)}),
      el("span", {class: "task-age"})),
    el("div", {class: "task-meta"},
      el("span", {text: t("state_" + task.state)}),
      task.page > 1 ? el("span", {class: "warn", text: t("paged_n", {n: task.page})}) : null,
      task.note ? el("span", {class: "note", text: task.note}) : null),
    el("div", {class: "task-actions"},
      task.state === "assigned" ? el("button", {type: "button", class: "primary", text: t("ack"),
                                                onclick: () => act(task.id, "ack")}) : null,
      el("button", {type: "button", text: t("done"), onclick: () => act(task.id, "done")}),
      el("button", {type: "button", class: "quiet", text: t("pass_on"), onclick: () => act(task.id, "cancel")}))));
  if (!items.length) items.push(el("li", {class: "muted empty", text: t("no_tasks")}));
  document.getElementById("tasks").replaceChildren(...items);
  tick();
}

function tick() {
  if (!view || !view.sent_at) return;
  const extra = serverNow() - view.sent_at;
  for (const node of document.querySelectorAll(".task[data-age]")) {
    node.querySelector(".task-age").textContent = ago(Number(node.dataset.age) + extra);
  }
}

let source = null;
if (RFM.waiter) {
  setInterval(tick, 1000);
  source = live({v: "queue"}, {queue: render});
} else {
  showPicker();
}
