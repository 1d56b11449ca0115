// Table QR codes: print them for the tables; a new code stops the old one working.
"use strict";

function tableCard(entry) {
  const img = el("img", {src: entry.qr + "?v=" + Date.now(), alt: entry.table, width: 180, height: 180});
  const link = el("a", {href: entry.url, class: "url", text: entry.url, target: "_blank", rel: "noopener"});
  return el("figure", {class: "qr card", dataset: {table: entry.table}}, img,
    el("figcaption", {}, el("b", {text: t("table_n", {table: entry.table})}),
      el("span", {class: "muted", text: " · " + t("section_n", {name: entry.section})}), el("br"), link,
      el("button", {type: "button", class: "quiet noprint", text: t("rotate"), onclick: async () => {
        if (!confirm(t("rotate_confirm", {table: entry.table}))) return;
        const r = await api("POST", "/api/tables/" + encodeURIComponent(entry.table) + "/token");
        if (!r.ok) {
          say(r.data.error, true);
          return;
        }
        say("");
        img.src = r.data.qr + "?v=" + Date.now();
        link.href = link.textContent = r.data.url;
      }})));
}

document.getElementById("print").addEventListener("click", () => window.print());

(async () => {
  const r = await api("GET", "/api/tables");
  if (!r.ok) {
    say(r.data.error, true);
    return;
  }
  document.getElementById("qr").replaceChildren(...r.data.tables.map(tableCard));
})();
