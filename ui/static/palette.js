/* The node palette: every registered node, grouped by category, filtered by a search box.
 * Click an entry to add the node at the centre of the view, or drag it onto the canvas.
 * Below it, the legend of port types and their colours.
 */
(function () {
  "use strict";
  const TG = (window.TalkGraph = window.TalkGraph || {});
  const DRAG_TYPE = "application/x-talkgraph-node";

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function portDots(ports, types) {
    const span = el("span", "tg-dots");
    for (const [name, port] of Object.entries(ports)) {
      const dot = el("i", "tg-dot");
      dot.style.background = (types[port.type] || {}).color || "#888";
      dot.title = name + ": " + port.type;
      span.appendChild(dot);
    }
    return span;
  }

  function matches(spec, words) {
    const hay = (spec.type + " " + spec.category + " " + spec.description + " " + spec.origin).toLowerCase();
    return words.every(function (w) { return hay.indexOf(w) >= 0; });
  }

  class Palette {
    constructor(root, schema, onAdd) {
      this.search = root.querySelector(".tg-search");
      this.list = root.querySelector(".tg-palette-list");
      this.legend = root.querySelector(".tg-legend");
      this.schema = schema;
      this.onAdd = onAdd;
      this.search.addEventListener("input", () => this.render());
      this.search.addEventListener("keydown", (e) => {
        if (e.key !== "Enter") return;
        const first = this.list.querySelector(".tg-node-item");
        if (first) this.onAdd(first.dataset.type);
      });
      this.render();
      this.renderLegend();
    }

    render() {
      const words = this.search.value.toLowerCase().split(/\s+/).filter(Boolean);
      const groups = {};
      for (const spec of Object.values(this.schema.nodes)) {
        if (!matches(spec, words)) continue;
        (groups[spec.category] = groups[spec.category] || []).push(spec);
      }
      this.list.replaceChildren();
      const cats = Object.keys(groups).sort();
      if (!cats.length) this.list.appendChild(el("div", "tg-empty", "no node matches"));
      for (const cat of cats) {
        const box = el("details", "tg-category");
        box.open = true;
        box.dataset.category = cat;
        box.appendChild(el("summary", null, cat + " (" + groups[cat].length + ")"));
        for (const spec of groups[cat].sort(function (a, b) { return a.type.localeCompare(b.type); })) {
          box.appendChild(this.item(spec));
        }
        this.list.appendChild(box);
      }
    }

    item(spec) {
      const types = this.schema.types;
      const item = el("div", "tg-node-item");
      item.dataset.type = spec.type;
      item.draggable = true;
      item.title = spec.description || spec.type;
      item.appendChild(portDots(spec.inputs, types));
      item.appendChild(el("span", "tg-node-name", spec.type));
      item.appendChild(portDots(spec.outputs, types));
      if (spec.origin && spec.origin.indexOf("plugin:") === 0) item.appendChild(el("span", "tg-badge", "plugin"));
      item.addEventListener("click", () => this.onAdd(spec.type));
      item.addEventListener("dragstart", function (e) {
        e.dataTransfer.setData(DRAG_TYPE, spec.type);
        e.dataTransfer.effectAllowed = "copy";
      });
      return item;
    }

    renderLegend() {
      const used = new Set();
      for (const spec of Object.values(this.schema.nodes)) {
        for (const p of Object.values(spec.inputs).concat(Object.values(spec.outputs))) used.add(p.type);
      }
      this.legend.replaceChildren(el("div", "tg-legend-title", "port types"));
      for (const name of Array.from(used).sort()) {
        const t = this.schema.types[name] || {};
        const row = el("span", "tg-legend-item");
        row.title = t.doc || name;
        const dot = el("i", "tg-dot");
        dot.style.background = t.color || "#888";
        row.appendChild(dot);
        row.appendChild(document.createTextNode(name));
        this.legend.appendChild(row);
      }
    }
  }

  TG.Palette = Palette;
  TG.PALETTE_DRAG_TYPE = DRAG_TYPE;
})();
