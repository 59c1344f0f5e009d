/* Where nodes go: a layered layout for files that give no positions, and a free spot for a
 * node added from the palette.
 *
 * Layered layout (the Sugiyama scheme, kept small): each node's layer is the length of the
 * longest path reaching it, so every edge points right; the order inside a layer is improved
 * by a few barycentre sweeps (fewer crossings); each layer is a column as wide as its widest
 * node, and a node sits at the mean height of its inputs unless the node above it needs the
 * room. Heights are the nodes' real ones plus what is drawn below them (problem text), so
 * nothing overlaps.
 */
(function () {
  "use strict";
  const TG = (window.TalkGraph = window.TalkGraph || {});
  const GAP_X = 70;
  const GAP_Y = 34;
  const SWEEPS = 4;

  // items: [{id, w, h}] (h includes the title and anything drawn below the node),
  // edges: [[fromId, toId]]. Returns {id: [x, y]} for the top-left corner of each item's box.
  TG.layeredLayout = function (items, edges, origin) {
    const ids = items.map(function (it) { return it.id; });
    const byId = {};
    items.forEach(function (it) { byId[it.id] = it; });
    const preds = {}, succs = {};
    ids.forEach(function (id) { preds[id] = []; succs[id] = []; });
    for (const [a, b] of edges) {
      if (a === b || !(a in preds) || !(b in preds)) continue;
      succs[a].push(b);
      preds[b].push(a);
    }
    // longest-path layers; a cycle (an invalid file) is cut where the walk meets it
    const layer = {};
    const state = {};
    function depth(id) {
      if (state[id] === 2) return layer[id];
      if (state[id] === 1) return 0;
      state[id] = 1;
      let d = 0;
      for (const p of preds[id]) d = Math.max(d, depth(p) + 1);
      state[id] = 2;
      layer[id] = d;
      return d;
    }
    ids.forEach(depth);
    const layers = [];
    ids.forEach(function (id) { (layers[layer[id]] = layers[layer[id]] || []).push(id); });
    for (let i = 0; i < layers.length; i++) layers[i] = layers[i] || [];
    // barycentre sweeps: down using inputs, up using outputs
    const rank = {};
    function renumber() { layers.forEach(function (l) { l.forEach(function (id, i) { rank[id] = i; }); }); }
    renumber();
    function bary(id, neighbours) {
      const ns = neighbours[id];
      if (!ns.length) return rank[id];
      return ns.reduce(function (s, n) { return s + rank[n]; }, 0) / ns.length;
    }
    for (let s = 0; s < SWEEPS; s++) {
      const down = s % 2 === 0;
      const order = down ? layers.slice(1) : layers.slice(0, -1).reverse();
      for (const l of order) {
        const key = {};
        l.forEach(function (id) { key[id] = bary(id, down ? preds : succs); });
        l.sort(function (a, b) { return key[a] - key[b] || rank[a] - rank[b]; });
        l.forEach(function (id, i) { rank[id] = i; });
      }
    }
    // columns and heights
    const out = {};
    let x = origin ? origin[0] : 40;
    const top = origin ? origin[1] : 40;
    for (const l of layers) {
      let width = 0;
      let bottom = top - GAP_Y;
      for (const id of l) {
        const it = byId[id];
        const ys = preds[id].filter(function (p) { return p in out; }).map(function (p) { return out[p][1]; });
        const wanted = ys.length ? ys.reduce(function (a, b) { return a + b; }, 0) / ys.length : top;
        const y = Math.max(wanted, bottom + GAP_Y);
        out[id] = [x, y];
        bottom = y + it.h;
        width = Math.max(width, it.w);
      }
      x += width + GAP_X;
    }
    return out;
  };

  // The box a node takes on the canvas: title bar, body and what is drawn below it.
  TG.nodeBox = function (node) {
    const th = LiteGraph.NODE_TITLE_HEIGHT;
    const below = node.tgBelowHeight ? node.tgBelowHeight() : 0;
    return [node.pos[0], node.pos[1] - th, node.size[0], node.size[1] + th + below];
  };

  function overlaps(a, b, margin) {
    return a[0] < b[0] + b[2] + margin && b[0] < a[0] + a[2] + margin &&
      a[1] < b[1] + b[3] + margin && b[1] < a[1] + a[3] + margin;
  }

  // A top-left position near `centre` where a w x h node (title included) overlaps nothing.
  TG.freeSpot = function (nodes, w, h, centre) {
    const th = LiteGraph.NODE_TITLE_HEIGHT;
    const boxes = nodes.map(TG.nodeBox);
    const start = [Math.round(centre[0] - w / 2), Math.round(centre[1] - h / 2)];
    const step = 40;
    for (let ring = 0; ring < 40; ring++) {
      for (let dx = -ring; dx <= ring; dx++) {
        for (let dy = -ring; dy <= ring; dy++) {
          if (Math.max(Math.abs(dx), Math.abs(dy)) !== ring) continue;
          const pos = [start[0] + dx * step, start[1] + dy * step];
          const box = [pos[0], pos[1] - th, w, h + th];
          if (!boxes.some(function (b) { return overlaps(box, b, 16); })) return pos;
        }
      }
    }
    return start;
  };

  TG.boxesOverlap = function (a, b) { return overlaps(a, b, 0); };
})();
