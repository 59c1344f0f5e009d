/* The node editor: a litegraph canvas whose node classes are made from the engine's schema.
 *
 * - Connections: an edge is accepted only if the engine's type table says so
 *   (schema.types[out].connects_to, computed by graphcore's TYPES.can_connect). litegraph asks
 *   `isValidConnection` with its arguments in either order in places (to dim slots while
 *   dragging), so that hint is answered in both directions; the decision itself is taken in
 *   the nodes' `connect`, where the direction is known.
 * - The graph travels as JSON (see ui/graphjson.py): TalkGraph.serialize() / TalkGraph.load().
 * - The server sends commands through the Gradio component's value: {seq, graph?, path?,
 *   status?, problems?}; status badges and problems are painted on the nodes.
 */
(function () {
  "use strict";
  const TG = (window.TalkGraph = window.TalkGraph || {});
  const STATE_COLORS = {
    pending: "#4b5563", queued: "#8a8f98", cached: "#3b82f6", running: "#f59e0b",
    done: "#22a559", failed: "#e5484d", skipped: "#6b7280",
  };
  const ID_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;
  const MISSING = "unknown/Missing";

  let schema = null;
  let connects = {}; // type name -> Set of input types it may feed (from the engine)
  let graph = null;
  let canvas = null;
  let root = null;
  let host = null;
  let loading = false; // while loading a file, edges are kept as written (validation reports mismatches)
  let lastSeq = null;
  let toastTimer = null;
  let order = 0; // creation order: litegraph reorders its node list on selection, files keep theirs
  TG.state = { path: null, description: "" };

  // --- the engine's compatibility table -------------------------------------------------

  TG.canConnect = function (outType, inType) {
    const targets = connects[outType];
    return !!targets && targets.has(inType);
  };

  function known(type) { return Object.prototype.hasOwnProperty.call(connects, type); }

  function configureLiteGraph() {
    // A hint only (litegraph passes the pair in either order); `connect` decides.
    LiteGraph.isValidConnection = function (a, b) {
      if (!known(a) || !known(b)) return true; // an unknown node's ports: validation reports it
      return TG.canConnect(a, b) || TG.canConnect(b, a);
    };
    LiteGraph.release_link_on_empty_shows_menu = false;
    LiteGraph.catch_exceptions = true;
    for (const [name, t] of Object.entries(schema.types)) {
      LGraphCanvas.link_type_colors[name] = t.color;
    }
  }

  // --- node classes -----------------------------------------------------------------------

  function registeredName(type) {
    const spec = schema.nodes[type];
    return spec ? spec.category + "/" + type : MISSING;
  }

  function snakeCase(type) {
    return type.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/[^A-Za-z0-9_-]/g, "_").toLowerCase();
  }

  function refuse(outType, inType, inName) {
    TG.toast("cannot connect: a " + outType + " output cannot feed the " + inType + " input '" + inName + "'", "error");
  }

  // Every edge is made through here (mouse, connectByType, loading): the engine's rule decides.
  function connect(slot, target, targetSlot) {
    const base = LGraphNode.prototype.connect;
    if (loading || this.tgMissing || !target || target.tgMissing) return base.call(this, slot, target, targetSlot);
    const out = this.outputs && this.outputs[typeof slot === "string" ? this.findOutputSlot(slot) : slot];
    const inIndex = typeof targetSlot === "string" ? target.findInputSlot(targetSlot) : targetSlot || 0;
    const input = target.inputs && target.inputs[inIndex];
    if (out && input && !TG.canConnect(out.type, input.type)) {
      refuse(out.type, input.type, input.name);
      return null;
    }
    return base.call(this, slot, target, targetSlot);
  }

  // Dropping a link on a node's body: the first free compatible input (or output).
  function connectByType(slot, target, outType) {
    if (!target.inputs) return null;
    let best = -1;
    target.inputs.forEach(function (s, i) {
      if (best < 0 && s.link == null && TG.canConnect(outType, s.type)) best = i;
    });
    if (best < 0) {
      refuse(outType, target.inputs.map(function (s) { return s.type; }).join("/") || "(no)", target.title);
      return null;
    }
    return this.connect(slot, target, best);
  }

  function connectByTypeOutput(slot, source, inType) {
    if (!source.outputs) return null;
    const i = source.outputs.findIndex(function (s) { return TG.canConnect(s.type, inType); });
    if (i < 0) {
      refuse(source.outputs.map(function (s) { return s.type; }).join("/") || "(no)", inType, this.inputs[slot].name);
      return null;
    }
    return source.connect(i, this, slot);
  }

  function onConnectionsChange(kind, slot, connected) {
    // An edge replaces a literal written for the same input.
    if (kind === LiteGraph.INPUT && connected && this.inputs[slot]) {
      const name = this.inputs[slot].name;
      if (Object.prototype.hasOwnProperty.call(this.properties.literals, name) && !loading) {
        delete this.properties.literals[name];
        TG.buildWidgets(this, schema.nodes[this.tgType]);
      }
    }
  }

  function drawPill(ctx, x, y, label, color) {
    ctx.font = "bold 11px sans-serif";
    const w = ctx.measureText(label).width + 14;
    ctx.fillStyle = color;
    ctx.beginPath();
    if (ctx.roundRect) ctx.roundRect(x - w, y, w, 17, 8);
    else ctx.rect(x - w, y, w, 17);
    ctx.fill();
    ctx.fillStyle = "#fff";
    ctx.textAlign = "left";
    ctx.fillText(label, x - w + 7, y + 12.5);
  }

  function statusLabel(st) {
    if (st.state === "running" && st.n) return "running " + st.i + "/" + st.n;
    if (st.state === "done" && typeof st.seconds === "number") {
      return "done " + (st.seconds < 1 ? Math.round(st.seconds * 1000) + " ms" : st.seconds.toFixed(1) + " s");
    }
    return st.state;
  }

  function wrap(ctx, text, width) {
    const lines = [];
    let line = "";
    for (const word of String(text).split(/\s+/)) {
      const next = line ? line + " " + word : word;
      if (ctx.measureText(next).width > width && line) {
        lines.push(line);
        line = word;
      } else line = next;
    }
    if (line) lines.push(line);
    return lines;
  }

  function onDrawForeground(ctx) {
    if (this.flags.collapsed) return;
    const th = LiteGraph.NODE_TITLE_HEIGHT;
    // the node type, dimmed, at the right of the title bar (the title is the node id)
    if (this.title !== this.tgType) {
      ctx.font = "11px sans-serif";
      ctx.fillStyle = "rgba(255,255,255,0.45)";
      ctx.textAlign = "right";
      ctx.fillText(this.tgType, this.size[0] - 8, -th / 2 + 4);
    }
    const st = this.tgStatus;
    if (st && st.state && st.state !== "pending") {
      const color = STATE_COLORS[st.state] || "#666";
      drawPill(ctx, this.size[0], -th - 21, statusLabel(st), color);
      if (st.state === "running" && st.n) {
        ctx.fillStyle = color;
        ctx.fillRect(0, this.size[1] - 4, this.size[0] * Math.min(1, st.i / st.n), 4);
      }
      if ((st.state === "failed" || st.state === "skipped") && st.error) this.tgDrawMessages(ctx, [st.error], color);
    }
    if (this.tgProblems && this.tgProblems.length) {
      ctx.strokeStyle = STATE_COLORS.failed;
      ctx.lineWidth = 2;
      ctx.strokeRect(-3, -th - 3, this.size[0] + 6, this.size[1] + th + 6);
      this.tgDrawMessages(ctx, this.tgProblems, "#ff8a8a");
    }
  }

  function drawMessages(ctx, messages, color) {
    ctx.font = "12px sans-serif";
    ctx.fillStyle = color;
    ctx.textAlign = "left";
    let y = this.size[1] + 18;
    for (const m of messages.slice(0, 4)) {
      for (const line of wrap(ctx, m, Math.max(this.size[0], 260)).slice(0, 3)) {
        ctx.fillText(line, 0, y);
        y += 15;
      }
    }
  }

  function onAdded() {
    if (this.tgOrder === undefined) this.tgOrder = order++; // pasted nodes go last
  }

  function setup(node, spec) {
    node.properties = { params: {}, literals: {}, layout: {}, rawInputs: {} };
    node.tgType = spec.type;
    node.tgStatus = null;
    node.tgProblems = [];
    for (const [name, port] of Object.entries(spec.inputs)) {
      const color = (schema.types[port.type] || {}).color;
      node.addInput(name, port.type, { color_on: color, color_off: color, label: port.optional ? name + "?" : name });
    }
    for (const [name, port] of Object.entries(spec.outputs)) {
      const color = (schema.types[port.type] || {}).color;
      node.addOutput(name, port.type, { color_on: color, color_off: color });
    }
    TG.buildWidgets(node, spec);
  }

  function makeNodeClass(spec) {
    function EngineNode() { setup(this, spec); }
    EngineNode.title = spec.type;
    EngineNode.desc = spec.description;
    const proto = EngineNode.prototype;
    proto.connect = connect;
    proto.connectByType = connectByType;
    proto.connectByTypeOutput = connectByTypeOutput;
    proto.onConnectionsChange = onConnectionsChange;
    proto.onDrawForeground = onDrawForeground;
    proto.tgDrawMessages = drawMessages;
    proto.onConfigure = function () { TG.buildWidgets(this, spec); }; // after copy/paste
    proto.onAdded = onAdded;
    return EngineNode;
  }

  // A node whose type is not registered (a plugin the server was not given): kept as written.
  function MissingNode() {
    this.properties = { params: {}, literals: {}, layout: {}, rawInputs: {} };
    this.tgMissing = true;
    this.tgProblems = [];
    this.color = "#553333";
  }
  MissingNode.title = "Missing";
  MissingNode.prototype.onDrawForeground = onDrawForeground;
  MissingNode.prototype.tgDrawMessages = drawMessages;
  MissingNode.prototype.onAdded = onAdded;

  function registerNodeTypes() {
    for (const spec of Object.values(schema.nodes)) {
      LiteGraph.registerNodeType(registeredName(spec.type), makeNodeClass(spec));
    }
    MissingNode.skip_list = true;
    LiteGraph.registerNodeType(MISSING, MissingNode);
  }

  // --- ids ------------------------------------------------------------------------------------

  function idOf(node) { return node.tgId || node.title; }

  function usedIds(except) {
    const ids = new Set();
    for (const n of graph._nodes) if (n !== except) ids.add(idOf(n));
    return ids;
  }

  function uniqueId(base, except) {
    const used = usedIds(except);
    if (!used.has(base)) return base;
    for (let i = 2; ; i++) if (!used.has(base + "_" + i)) return base + "_" + i;
  }

  function cleanId(title) {
    let id = String(title || "").trim().replace(/[^A-Za-z0-9_-]+/g, "_");
    if (!ID_RE.test(id)) id = "n_" + id;
    return id;
  }

  // Titles are node ids: make each a valid, unique id before the graph leaves the page.
  function normaliseIds() {
    const seen = new Set();
    for (const n of orderedNodes()) {
      let id = cleanId(n.title);
      if (seen.has(id)) {
        let i = 2;
        while (seen.has(id + "_" + i)) i++;
        id = id + "_" + i;
      }
      seen.add(id);
      n.tgId = id;
      n.title = id;
    }
  }

  // --- graph JSON ----------------------------------------------------------------------------

  function orderedNodes() {
    return graph._nodes.slice().sort(function (a, b) { return a.tgOrder - b.tgOrder; });
  }

  TG.serialize = function () {
    normaliseIds();
    const nodes = orderedNodes().map(function (n) {
      const inputs = {};
      for (const slot of n.inputs || []) {
        const link = slot.link != null ? graph.links[slot.link] : null;
        if (link) {
          const from = graph.getNodeById(link.origin_id);
          inputs[slot.name] = { node: idOf(from), port: from.outputs[link.origin_slot].name };
        } else if (Object.prototype.hasOwnProperty.call(n.properties.literals, slot.name)) {
          inputs[slot.name] = n.properties.literals[slot.name];
        } else if (n.properties.rawInputs[slot.name]) {
          inputs[slot.name] = n.properties.rawInputs[slot.name];
        }
      }
      for (const [name, value] of Object.entries(n.properties.literals)) {
        if (!(name in inputs)) inputs[name] = value; // literal for a port the node does not have
      }
      const layout = Object.assign({}, n.properties.layout, { x: Math.round(n.pos[0]), y: Math.round(n.pos[1]) });
      return { id: idOf(n), type: n.tgType, params: Object.assign({}, n.properties.params), inputs: inputs, layout: layout };
    });
    return { path: TG.state.path, description: TG.state.description, nodes: nodes };
  };

  TG.serializeJSON = function () { return JSON.stringify(TG.serialize()); };

  function outputsReferenced(g) {
    const refs = {};
    for (const spec of g.nodes) {
      for (const src of Object.values(spec.inputs || {})) {
        if (src && typeof src === "object" && "node" in src && "port" in src) {
          (refs[src.node] = refs[src.node] || new Set()).add(src.port);
        }
      }
    }
    return refs;
  }

  function createNode(spec, refs) {
    let node;
    if (schema.nodes[spec.type]) {
      node = LiteGraph.createNode(registeredName(spec.type));
      node.properties.params = Object.assign({}, spec.params || {});
    } else {
      node = LiteGraph.createNode(MISSING);
      node.tgType = spec.type;
      node.properties.params = Object.assign({}, spec.params || {});
      for (const name of Object.keys(spec.inputs || {})) node.addInput(name, "?");
      for (const port of refs[spec.id] || []) node.addOutput(port, "?");
      node.size = [Math.max(240, node.computeSize()[0]), node.computeSize()[1]];
    }
    for (const [name, src] of Object.entries(spec.inputs || {})) {
      if (!(src && typeof src === "object" && "node" in src)) node.properties.literals[name] = src;
    }
    const layout = Object.assign({}, spec.layout || {});
    delete layout.x;
    delete layout.y;
    node.properties.layout = layout;
    node.title = spec.id;
    node.tgId = spec.id;
    node.tgOrder = order++;
    node.pos = [spec.pos[0], spec.pos[1]];
    if (!node.tgMissing) TG.buildWidgets(node, schema.nodes[spec.type]);
    return node;
  }

  TG.load = function (g) {
    loading = true;
    try {
      graph.clear();
      TG.state.path = g.path || null;
      TG.state.description = g.description || "";
      const refs = outputsReferenced(g);
      const byId = {};
      for (const spec of g.nodes) {
        const node = createNode(spec, refs);
        graph.add(node);
        byId[spec.id] = node;
      }
      for (const spec of g.nodes) {
        const to = byId[spec.id];
        for (const [name, src] of Object.entries(spec.inputs || {})) {
          if (!(src && typeof src === "object" && "node" in src)) continue;
          const from = byId[src.node];
          const out = from ? from.findOutputSlot(src.port) : -1;
          const inp = to.findInputSlot(name);
          if (out < 0 || inp < 0 || !from.connect(out, to, inp)) to.properties.rawInputs[name] = src;
        }
      }
    } finally {
      loading = false;
    }
    showPath();
    TG.fit();
    graph.setDirtyCanvas(true, true);
  };

  // --- adding nodes --------------------------------------------------------------------------

  let addCount = 0;
  TG.addNode = function (type, pos) {
    const node = LiteGraph.createNode(registeredName(type));
    if (!node) return null;
    node.title = uniqueId(snakeCase(type));
    node.tgId = node.title;
    node.tgOrder = order++;
    if (!pos) {
      const c = canvas.canvas;
      const centre = canvas.ds.convertCanvasToOffset([c.width / 2, c.height / 2]);
      const k = addCount++ % 6;
      pos = [centre[0] - node.size[0] / 2 + k * 30, centre[1] - node.size[1] / 2 + k * 30];
    }
    node.pos = [Math.round(pos[0]), Math.round(pos[1])];
    graph.add(node);
    canvas.selectNode(node);
    graph.setDirtyCanvas(true, true);
    return node;
  };

  // --- view ------------------------------------------------------------------------------------

  TG.fit = function () {
    const nodes = graph._nodes;
    const c = canvas.canvas;
    if (!nodes.length || !c.width) {
      canvas.ds.offset = [0, 0];
      canvas.ds.scale = 1;
      return;
    }
    const th = LiteGraph.NODE_TITLE_HEIGHT;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of nodes) {
      x0 = Math.min(x0, n.pos[0]);
      y0 = Math.min(y0, n.pos[1] - th - 24);
      x1 = Math.max(x1, n.pos[0] + n.size[0]);
      y1 = Math.max(y1, n.pos[1] + n.size[1] + 40);
    }
    const margin = 30;
    const scale = Math.min(1, (c.width - 2 * margin) / (x1 - x0), (c.height - 2 * margin) / (y1 - y0));
    canvas.ds.scale = Math.max(0.35, scale);
    canvas.ds.offset = [(c.width / canvas.ds.scale - (x1 - x0)) / 2 - x0, (c.height / canvas.ds.scale - (y1 - y0)) / 2 - y0];
    canvas.setDirty(true, true);
  };

  function showPath() {
    const label = root.querySelector(".tg-path");
    label.textContent = TG.state.path || "untitled (not saved)";
  }

  TG.toast = function (message, kind) {
    if (!root) return;
    const box = root.querySelector(".tg-toast");
    box.textContent = message;
    box.className = "tg-toast visible" + (kind === "error" ? " error" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.className = "tg-toast"; }, 4000);
  };

  // --- commands from the server ------------------------------------------------------------

  function nodesById() {
    const map = {};
    for (const n of graph._nodes) map[idOf(n)] = n;
    return map;
  }

  TG.setStatus = function (status) {
    const nodes = (status && status.nodes) || {};
    for (const [id, n] of Object.entries(nodesById())) {
      n.tgStatus = nodes[id] || null;
      const st = n.tgStatus;
      n.boxcolor = st && st.state !== "pending" ? STATE_COLORS[st.state] : undefined;
    }
    graph.setDirtyCanvas(true, true);
  };

  TG.setProblems = function (problems) {
    const map = nodesById();
    for (const n of graph._nodes) n.tgProblems = [];
    for (const p of problems || []) {
      if (p.node_id && map[p.node_id]) map[p.node_id].tgProblems.push(p.message);
    }
    graph.setDirtyCanvas(true, true);
  };

  TG.apply = function (cmd) {
    if (!cmd || typeof cmd !== "object" || cmd.seq === lastSeq) return;
    lastSeq = cmd.seq;
    if (cmd.graph) TG.load(cmd.graph);
    if ("path" in cmd) {
      TG.state.path = cmd.path;
      showPath();
    }
    if (cmd.status) TG.setStatus(cmd.status);
    if (cmd.problems) TG.setProblems(cmd.problems);
  };

  // State for tests and debugging: what each node shows.
  TG.nodeStates = function () {
    const out = {};
    for (const [id, n] of Object.entries(nodesById())) {
      const st = n.tgStatus || {};
      out[id] = { status: st.state || null, i: st.i, n: st.n, error: st.error || "", problems: n.tgProblems.slice() };
    }
    return out;
  };

  // Where a slot is on the page (for driving the editor with a real mouse in tests).
  TG.slotPagePosition = function (nodeId, isInput, name) {
    const n = nodesById()[nodeId];
    const slot = isInput ? n.findInputSlot(name) : n.findOutputSlot(name);
    const p = n.getConnectionPos(isInput, slot);
    const s = canvas.ds.convertOffsetToCanvas(p);
    const r = canvas.canvas.getBoundingClientRect();
    return [r.left + s[0] * (r.width / canvas.canvas.width), r.top + s[1] * (r.height / canvas.canvas.height)];
  };

  TG.widgetPagePosition = function (nodeId, name) {
    const n = nodesById()[nodeId];
    const w = n.widgets.find(function (x) { return x.name === name; });
    // litegraph sets last_y while drawing; a node placed since the last frame has none yet.
    if (typeof w.last_y !== "number") canvas.draw(true, true);
    const s = canvas.ds.convertOffsetToCanvas([n.pos[0] + n.size[0] / 2, n.pos[1] + w.last_y + LiteGraph.NODE_WIDGET_HEIGHT / 2]);
    const r = canvas.canvas.getBoundingClientRect();
    return [r.left + s[0] * (r.width / canvas.canvas.width), r.top + s[1] * (r.height / canvas.canvas.height)];
  };

  // --- mounting --------------------------------------------------------------------------------

  function fitCanvasToBox(wrapEl, canvasEl) {
    const r = wrapEl.getBoundingClientRect();
    const w = Math.max(100, Math.floor(r.width));
    const h = Math.max(100, Math.floor(r.height));
    if (canvasEl.width !== w || canvasEl.height !== h) canvas.resize(w, h);
  }

  TG.mount = async function (element, gradio) {
    if (root === element) return;
    root = element;
    host = gradio;
    const response = await fetch("talkgraph/schema", { credentials: "same-origin" });
    schema = await response.json();
    connects = {};
    for (const [name, t] of Object.entries(schema.types)) connects[name] = new Set(t.connects_to);
    configureLiteGraph();
    registerNodeTypes();

    const wrapEl = element.querySelector(".tg-canvas-wrap");
    const canvasEl = element.querySelector(".tg-canvas");
    graph = new LGraph();
    canvas = new LGraphCanvas(canvasEl, graph);
    canvas.allow_searchbox = false; // the palette is the search
    canvas.render_canvas_border = false;
    canvas.show_info = false;
    canvas.onNodeSelected = function (node) { if (host.select) host.select(idOf(node)); };
    fitCanvasToBox(wrapEl, canvasEl);
    new ResizeObserver(function () { fitCanvasToBox(wrapEl, canvasEl); }).observe(wrapEl);

    wrapEl.addEventListener("dragover", function (e) {
      if (e.dataTransfer.types.indexOf(TG.PALETTE_DRAG_TYPE) >= 0) e.preventDefault();
    });
    wrapEl.addEventListener("drop", function (e) {
      const type = e.dataTransfer.getData(TG.PALETTE_DRAG_TYPE);
      if (!type) return;
      e.preventDefault();
      TG.addNode(type, canvas.convertEventToCanvasOffset(e));
    });

    TG.palette = new TG.Palette(element, schema, function (type) { TG.addNode(type); });
    if (schema.plugin_errors && schema.plugin_errors.length) {
      TG.toast(schema.plugin_errors.length + " plugin(s) failed to load: see the message below the editor", "error");
    }
    showPath();
    if (host.watch) host.watch("value", function () { TG.apply(host.props.value); });
    TG.apply(host.props && host.props.value);
    TG.graph = graph;
    TG.canvas = canvas;
  };
})();
