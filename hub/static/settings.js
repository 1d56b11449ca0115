// Settings screens: floor, menu routing, logins. Each saves through its API; the error the
// API answers names the field ("waiters[1].shifts[0]: ..."), shown at that field.
"use strict";

const fields = document.getElementById("fields");
const list = (text) => text.split(/[,，]/).map((s) => s.trim()).filter(Boolean);

function input(attrs) {
  return el("input", Object.assign({type: "text"}, attrs));
}

function select(options, value, attrs) {
  return el("select", attrs || {}, options.map(([v, label]) => el("option", {value: v, selected: v === value, text: label})));
}

function labelled(text, control) {
  return el("label", {class: "field"}, el("span", {text}), control);
}

function clearErrors(root) {
  for (const node of root.querySelectorAll(".field-error")) node.remove();
  for (const node of root.querySelectorAll(".invalid")) node.classList.remove("invalid");
}

// Mark the input whose data-path names the error's field; false if none does.
function showError(root, error) {
  const at = error.indexOf(": ");
  const path = at > 0 ? error.slice(0, at) : "";
  const reason = at > 0 ? error.slice(at + 2) : error;
  let best = null;
  for (const node of root.querySelectorAll("[data-path]")) {
    const p = node.dataset.path;
    if (!path.startsWith(p)) continue;
    const rest = path.slice(p.length);
    if (rest && rest[0] !== "." && rest[0] !== "[") continue;
    const score = p.length * 4 + (rest.startsWith("[") ? (node.dataset.list ? 2 : 0) : (node.dataset.value ? 1 : 0));
    if (!best || score > best.score) best = {node, score};
  }
  if (!best) return false;
  best.node.classList.add("invalid");
  best.node.after(el("span", {class: "field-error", role: "alert", text: reason}));
  best.node.focus();
  best.node.scrollIntoView({block: "center"});
  return true;
}

// A block of rows: make(values) returns {row, collect(set path)}; rows come with a remove button.
function rows(title, headers, initial, make, blank) {
  const body = el("tbody");
  const items = [];
  const add = (values) => {
    const item = make(values);
    const tr = el("tr", {}, item.cells.map((cell) => el("td", {}, cell)),
      el("td", {}, el("button", {type: "button", class: "quiet", text: t("remove"), onclick: () => {
        items.splice(items.indexOf(item), 1);
        tr.remove();
      }})));
    item.tr = tr;
    items.push(item);
    body.append(tr);
  };
  initial.forEach(add);
  const block = el("section", {class: "card block"}, el("h2", {text: title}),
    el("table", {class: "grid edit"}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {text: h})), el("th"))), body),
    el("button", {type: "button", text: "+ " + t("add"), onclick: () => add(blank())}));
  return {block, items};
}

// --- floor -------------------------------------------------------------------
function floorForm(doc) {
  const types = rows(t("call_types"), [t("call_type"), t("priority"), t("route_to")],
    Object.entries(doc.call_types), ([name, spec]) => {
      const key = input({value: name, class: "short"});
      const prio = input({type: "number", value: spec.prio, min: 0, max: 9, class: "num", dataset: {value: 1}});
      const to = select(RFM.routes.map((r) => [r, t("role_" + r)]), spec.to);
      return {cells: [key, prio, to], collect(out) {
        const p = "call_types." + key.value.trim();
        key.dataset.path = p;
        prio.dataset.path = p + ".prio";
        to.dataset.path = p + ".to";
        const entry = {prio: Number(prio.value), to: to.value};
        if (spec.escalation) entry.escalation = spec.escalation;
        out.call_types[key.value.trim()] = entry;
      }};
    }, () => ["", {prio: 4, to: "server"}]);
  const sections = rows(t("sections"), [t("section"), t("tables_list")], Object.entries(doc.sections),
    ([name, tables]) => {
      const key = input({value: name, class: "short"});
      const value = input({value: tables.join(", "), class: "wide", dataset: {list: 1}});
      return {cells: [key, value], collect(out) {
        const p = "sections." + key.value.trim();
        key.dataset.path = p;
        value.dataset.path = p;
        out.sections[key.value.trim()] = list(value.value);
      }};
    }, () => ["", []]);
  const waiters = rows(t("waiters"), [t("waiter_id"), t("waiter_name"), t("role"), t("pager"), t("waiter_sections"),
    t("shifts"), t("active")], doc.waiters, (w) => {
    const id = input({value: w.id, class: "short"});
    const name = input({value: w.name});
    const role = select(RFM.roles.map((r) => [r, t("role_" + r)]), w.role);
    const pager = input({value: w.pager, class: "short"});
    const secs = input({value: w.sections.join(", "), dataset: {list: 1}});
    const shifts = input({value: w.shifts.join(", "), placeholder: "11:00-15:00", dataset: {list: 1}});
    const active = el("input", {type: "checkbox", checked: w.active});
    return {cells: [id, name, role, pager, secs, shifts, active], collect(out) {
      const p = "waiters[" + out.waiters.length + "]";
      [[id, "id"], [name, "name"], [role, "role"], [pager, "pager"], [secs, "sections"], [shifts, "shifts"],
       [active, "active"]].forEach(([node, f]) => { node.dataset.path = p + "." + f; });
      out.waiters.push({id: id.value.trim(), name: name.value.trim() || id.value.trim(), role: role.value,
                        pager: pager.value.trim(), sections: list(secs.value), shifts: list(shifts.value),
                        active: active.checked});
    }};
  }, () => ({id: "", name: "", role: "server", pager: "", sections: [], shifts: [], active: true}));
  const steps = rows(t("escalation"), [t("after_s"), t("step_do")], doc.escalation.steps, (s) => {
    const after = input({type: "number", value: s.after, min: 1, class: "num"});
    const action = select(RFM.steps.map((d) => [d, t("step_" + d)]), s.do);
    return {cells: [after, action], collect(out) {
      const p = "escalation.steps[" + out.escalation.steps.length + "]";
      after.dataset.path = p + ".after";
      action.dataset.path = p + ".do";
      out.escalation.steps.push({after: Number(after.value), do: action.value});
    }};
  }, () => ({after: 40, do: "repage"}));
  const repeat = input({type: "number", value: doc.escalation.repeat, min: 0, class: "num",
                        dataset: {path: "escalation.repeat"}});
  const maxTasks = input({type: "number", value: doc.max_tasks, min: 1, max: 20, class: "num", dataset: {path: "max_tasks"}});
  const boost = input({type: "number", value: doc.reminder_boost, min: 0, max: 9, class: "num",
                       dataset: {path: "reminder_boost"}});
  steps.block.append(el("div", {}, labelled(t("repeat_s"), repeat)));
  fields.replaceChildren(types.block, sections.block, waiters.block, steps.block,
    el("section", {class: "card block"}, labelled(t("max_tasks"), maxTasks), labelled(t("reminder_boost"), boost)));
  return () => {
    const out = {call_types: {}, sections: {}, waiters: [], escalation: {steps: [], repeat: Number(repeat.value)},
                 max_tasks: Number(maxTasks.value), reminder_boost: Number(boost.value)};
    for (const block of [types, sections, waiters, steps]) block.items.forEach((item) => item.collect(out));
    return out;
  };
}

// --- menu --------------------------------------------------------------------
function menuForm(doc) {
  const stationNames = () => Object.keys(doc.stations).filter((s) => !doc.stations[s].expo);
  const stationSelect = (value) => select(stationNames().map((s) => [s, doc.stations[s].label + " (" + s + ")"]), value);
  const stations = rows(t("stations"), [t("station"), t("label"), t("devices_list"), t("warn_min"), t("late_min"),
    t("max_tickets"), t("expo")], Object.entries(doc.stations), ([name, s]) => {
    const key = input({value: name, class: "short"});
    const label = input({value: s.label, class: "short"});
    const devices = input({value: s.devices.join(", "), dataset: {list: 1}});
    const warn = input({type: "number", value: s.warn_min, min: 0.1, step: "any", class: "num"});
    const late = input({type: "number", value: s.late_min, min: 0.1, step: "any", class: "num"});
    const most = input({type: "number", value: s.max_tickets, min: 1, max: 24, class: "num"});
    const expo = el("input", {type: "checkbox", checked: !!s.expo});
    return {cells: [key, label, devices, warn, late, most, expo], collect(out) {
      const p = "stations." + key.value.trim();
      key.dataset.path = p;
      [[label, "label"], [devices, "devices"], [warn, "warn_min"], [late, "late_min"], [most, "max_tickets"],
       [expo, "expo"]].forEach(([node, f]) => { node.dataset.path = p + "." + f; });
      const spec = {label: label.value.trim(), devices: list(devices.value), warn_min: Number(warn.value),
                    late_min: Number(late.value), max_tickets: Number(most.value)};
      if (expo.checked) spec.expo = true;
      out.stations[key.value.trim()] = spec;
    }};
  }, () => ["", {label: "", devices: [], warn_min: 5, late_min: 8, max_tickets: 10}]);
  const routes = (kind, title, head) => rows(title, [head, t("station")], Object.entries(doc[kind]), ([name, station]) => {
    const key = input({value: name});
    const value = stationSelect(station);
    value.dataset.value = 1;
    return {cells: [key, value], collect(out) {
      key.dataset.path = value.dataset.path = kind + "." + key.value.trim();
      out[kind][key.value.trim()] = value.value;
    }};
  }, () => ["", stationNames()[0]]);
  const items = routes("items", t("dish_routes"), t("dish"));
  const categories = routes("categories", t("category_routes"), t("category"));
  const fallback = stationSelect(doc.default);
  fallback.dataset.path = "default";
  fields.replaceChildren(stations.block, items.block, categories.block,
    el("section", {class: "card block"}, labelled(t("default_station"), fallback)));
  return () => {
    const out = {stations: {}, items: {}, categories: {}, default: fallback.value};
    for (const block of [stations, items, categories]) block.items.forEach((item) => item.collect(out));
    return out;
  };
}

async function editDocument(url, form, unwrap) {
  const r = await api("GET", url);
  let collect = form(r.data);
  document.getElementById("form").addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(fields);
    const doc = collect();
    const saved = await api("PUT", url, doc);
    if (saved.ok) {
      collect = form(unwrap(saved.data));
      say([t("saved")].concat(saved.data.warnings || []).join(" "));
    } else {
      say(t("not_saved", {error: saved.data.error}), true);
      showError(fields, saved.data.error || "");
    }
  });
}

// --- logins ------------------------------------------------------------------
async function accounts() {
  const r = await api("GET", "/api/accounts");
  const waiters = [["", "–"]].concat(r.data.waiters.map((w) => [w, w]));
  const body = el("tbody");
  const row = (a, isNew) => {
    const name = input({value: a.name, class: "short", readonly: !isNew, dataset: {path: "name"}});
    const role = select(RFM.roles.map((x) => [x, t("role_" + x)]), a.role, {dataset: {path: "role"}});
    const waiter = select(waiters, a.waiter || "", {dataset: {path: "waiter"}});
    const password = input({type: "password", autocomplete: "new-password", dataset: {path: "password"}});
    const tr = el("tr", {}, [name, role, waiter, password].map((c) => el("td", {}, c)), el("td", {},
      el("button", {type: "button", class: "primary", text: t(isNew ? "add" : "save"), onclick: async () => {
        clearErrors(tr);
        const res = await api("PUT", "/api/accounts/" + encodeURIComponent(name.value.trim()),
                              {role: role.value, waiter: waiter.value, password: password.value});
        if (res.ok) {
          say(t("saved"));
          accounts();
        } else {
          say(t("not_saved", {error: res.data.error}), true);
          showError(tr, res.data.error || "");
        }
      }}),
      isNew || a.name === RFM.me ? null : el("button", {type: "button", class: "quiet", text: t("remove"), onclick: async () => {
        const res = await api("DELETE", "/api/accounts/" + encodeURIComponent(a.name));
        say(res.ok ? t("saved") : res.data.error, !res.ok);
        if (res.ok) accounts();
      }})));
    return tr;
  };
  body.replaceChildren(...r.data.accounts.map((a) => row(a, false)), row({name: "", role: "staff"}, true));
  fields.replaceChildren(
    r.data.demo ? el("p", {class: "hint", text: t("accounts_demo")}) : "",
    el("table", {class: "grid edit"}, el("thead", {}, el("tr", {},
      [t("name"), t("role"), t("waiter_link"), t("new_password"), ""].map((h) => el("th", {text: h})))), body));
  document.querySelector("#form button[type=submit]").hidden = true;
}

if (RFM.screen === "floor") editDocument("/api/floor", floorForm, (d) => d.floor);
if (RFM.screen === "menu") editDocument("/api/menu", menuForm, (d) => d);
if (RFM.screen === "accounts") accounts();
