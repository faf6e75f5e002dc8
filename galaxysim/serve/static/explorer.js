// galaxysim explorer: the upload page. Plain JavaScript, no build step; every
// label and file name is set as text (textContent), never as HTML.
"use strict";
(function () {
  const drop = document.getElementById("drop");
  const input = document.getElementById("file");
  const form = document.getElementById("upload-controls");
  const status = document.getElementById("status");
  const queryBox = document.getElementById("query");
  const results = document.getElementById("results");
  const csvButton = document.getElementById("csv");
  let current = null;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function params() {
    const data = new FormData(form);
    const p = new URLSearchParams();
    for (const m of data.getAll("method")) p.append("method", m);
    p.set("k", data.get("k") || "10");
    if (data.get("within")) p.set("within", data.get("within"));
    if (data.get("per_class")) p.set("per_class", "true");
    return p;
  }

  async function post(url, file) {
    const body = new FormData();
    body.append("file", file, file.name);
    const response = await fetch(url, { method: "POST", body: body });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return response;
  }

  function showQuery(q) {
    queryBox.replaceChildren();
    const figures = q.unmatched ? [[q.unmatched, "before matching"], [q.image, "as searched"]]
                                : [[q.image, "as searched"]];
    for (const [src, caption] of figures) {
      const fig = el("figure");
      fig.append(el("img", { src: src, alt: "query " + caption, width: 128, height: 128 }));
      fig.append(el("figcaption", {}, caption));
      queryBox.append(fig);
    }
    const text = el("div");
    text.append(el("h1", {}, q.description));
    if (q.matching) text.append(el("p", { class: "matching" }, "Matched to the catalogue: " + q.matching));
    text.append(el("p", { class: "hint" }, "Click a neighbour to make it the query."));
    queryBox.append(text);
    queryBox.hidden = false;
  }

  function showMethod(method, rows, link) {
    const section = el("section", { class: "method", "data-method": method });
    section.append(el("h2", {}, method));
    const list = el("ol", { class: "neighbours" });
    for (const r of rows) {
      const a = el("a", { href: "/galaxy/" + r.index + "?" + link, title: r.file || "" });
      a.append(el("img", { src: "/api/galaxy/" + r.index + ".png", alt: "galaxy " + r.index,
                           width: 64, height: 64 }));
      const cap = el("span", { class: "caption" });
      cap.append(el("b", {}, "#" + r.rank), " galaxy " + r.index, el("br"));
      if (r.label !== null) cap.append(el("span", { class: "label" }, r.label), el("br"));
      if (r.file !== null) cap.append(el("span", { class: "file" }, r.file), el("br"));
      cap.append(el("span", { class: "distance" }, "d = " + Number(r.distance).toPrecision(4)));
      a.append(cap);
      const li = el("li");
      li.append(a);
      list.append(li);
    }
    section.append(list);
    return section;
  }

  async function search() {
    if (!current) return;
    const p = params();
    const methods = p.getAll("method");
    status.textContent = "searching " + current.name + " ...";
    results.replaceChildren();
    csvButton.disabled = true;
    try {
      showQuery(await (await post("/api/query", current)).json());
      for (const m of methods) {
        const q = new URLSearchParams(p);
        q.delete("method");
        q.set("method", m);
        const rows = await (await post("/api/search?" + q, current)).json();
        results.append(showMethod(m, rows, p.toString()));
      }
      status.textContent = methods.length ? "" : "choose at least one method.";
      csvButton.disabled = methods.length === 0;
    } catch (err) {
      status.textContent = "";
      const box = el("p", { class: "error", role: "alert" }, err.message);
      results.replaceChildren(box);
    }
  }

  async function downloadCsv() {
    try {
      const blob = await (await post("/api/search.csv?" + params(), current)).blob();
      const a = el("a", { href: URL.createObjectURL(blob), download: "galaxysim-results.csv" });
      document.body.append(a);
      a.click();
      a.remove();
    } catch (err) {
      results.prepend(el("p", { class: "error", role: "alert" }, err.message));
    }
  }

  function take(files) {
    if (files && files.length) {
      current = files[0];
      search();
    }
  }

  input.addEventListener("change", () => take(input.files));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    take(e.dataTransfer.files);
  });
  document.getElementById("update").addEventListener("click", search);
  csvButton.addEventListener("click", downloadCsv);
})();
