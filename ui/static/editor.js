/* The node editor: a litegraph canvas whose node classes are made from the engine's schema.
 *
 * - Connections: an edge is accepted only if the engine's type table says so
 *   (schema.types[out].connects_to, computed by graphcore's TYPES.can_connect). litegraph asks
 *   `isValidConnection` with its arguments in either order in places (to dim slots while
 *   dragging), so that hint is answered in both directions; the decision itself is taken in
 *   the nodes' `connect`, where the direction is known. A refusal names its reason and the
 *   ports; where an adapter node converts one type into the other (Node.adapter, e.g.
 *   ImageToFrames) it is inserted instead. An input of an exactly-one group (Node.exactly_one_of)
 *   is refused while another input of the group is connected.
 * - The graph travels as JSON (see ui/graphjson.py): TalkGraph.serialize() / TalkGraph.load().
 *   Positions are written back only once the user placed something (moved or added a node,
 *   or arranged them), so opening and saving an untouched file changes nothing.
 * - The server sends commands through the Gradio component's value: {seq, graph?, path?,
 *   status?, reset?, previews?, problems?, saved?}; status badges, problems and previews (an
 *   image strip, curves or numbers from the cache) are painted on the nodes.
 * - Undo/redo (history.js) keep snapshots of the graph; a graph that differs from what was
 *   last opened or saved has unsaved changes, and opening something else asks first.
 */
(function () {
  "use strict";
  const TG = (window.TalkGraph = window.TalkGraph || {});
  const STATE_COLORS = {
    pending: "#4b5563", queued: "#8a8f98", cached: "#3b82f6", running: "#f59e0b",
    done: "#22a559", failed: "#e5484d", skipped: "#6b7280", cancelled: "#a855f7",
  };
  const CURVE_COLORS = ["#60a5fa", "#f59e0b", "#34d399", "#f472b6", "#a78bfa", "#facc15"];
  const ID_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;
  const MISSING = "unknown/Missing";
  const PREVIEW_IMAGE_H = 96;
  const PANEL_H = 40;
  const LAST_KEY = "talkgraph.last";

  let schema = null;
  let connects = {}; // type name -> Set of input types it may feed (from the engine)
  let graph = null;
  let canvas = null;
  let root = null;
  let host = null;
  let loading = false; // while loading a file, edges are kept as written (validation reports mismatches)
  let lastSeq = null;
  let toastTimer = null;
  let changeTimer = null;
  let order = 0; // creation order: litegraph reorders its node list on selection, files keep theirs
  let baseline = null; // the graph JSON last opened or saved: anything else is unsaved
  let lastSaveJSON = null;
  let lastStatus = {};
  let lastProblems = [];
  let previews = {}; // node id -> preview from the server (image ones with a loaded <img>)
  const history = new TG.History(200);
  TG.state = { path: null, description: "", layout: null, positioned: false };

  // --- the engine's compatibility table -------------------------------------------------

  TG.canConnect = function (outType, inType) {
    const targets = connects[outType];
    return !!targets && targets.has(inType);
  };

  function known(type) { return Object.prototype.hasOwnProperty.call(connects, type); }
  function has(obj, key) { return Object.prototype.hasOwnProperty.call(obj, key); }

  function configureLiteGraph() {
    // A hint only (litegraph passes the pair in either order); `connect` decides.
    LiteGraph.isValidConnection = function (a, b) {
      if (!known(a) || !known(b)) return true; // an unknown node's ports: validation reports it
      return TG.canConnect(a, b) || TG.canConnect(b, a) || !!adapterFor(a, b) || !!adapterFor(b, a);
    };
    LiteGraph.release_link_on_empty_shows_menu = false;
    LiteGraph.catch_exceptions = true;
    for (const [name, t] of Object.entries(schema.types)) {
      LGraphCanvas.link_type_colors[name] = t.color;
    }
  }

  // An adapter node type turning an `outType` value into one an `inType` input takes.
  function adapterFor(outType, inType) {
    for (const spec of Object.values(schema.nodes)) {
      if (!spec.adapter) continue;
      const inPort = Object.values(spec.inputs)[0], outPort = Object.values(spec.outputs)[0];
      if (inPort && outPort && TG.canConnect(outType, inPort.type) && TG.canConnect(outPort.type, inType)) return spec.type;
    }
    return null;
  }

  // --- node classes -----------------------------------------------------------------------

  function registeredName(type) {
    const spec = schema.nodes[type];
    return spec ? spec.category + "/" + type : MISSING;
  }

  function snakeCase(type) {
    return type.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/[^A-Za-z0-9_-]/g, "_").toLowerCase();
  }

  function article(word) { return /^[AEIOU]/i.test(word) ? "an" : "a"; }

  function refuse(message) {
    TG.toast("cannot connect: " + message, "error");
  }

  // The other input of an exactly-one group that is already given, if any.
  function groupConflict(target, inputName) {
    const spec = schema.nodes[target.tgType];
    for (const group of (spec && spec.exactly_one_of) || []) {
      if (group.indexOf(inputName) < 0) continue;
      for (const other of group) {
        if (other === inputName) continue;
        const i = target.findInputSlot(other);
        if ((i >= 0 && target.inputs[i].link != null) || has(target.properties.literals, other)) return { group: group, other: other };
      }
    }
    return null;
  }

  function groupMessage(target, inputName, conflict) {
    return idOf(target) + "." + inputName + ": " + idOf(target) + " takes exactly one of " +
      conflict.group.map(function (n) { return "'" + n + "'"; }).join(", ") + ", and '" + conflict.other +
      "' is already connected (disconnect it first)";
  }

  // Every edge is made through here (mouse, connectByType, loading): the engine's rule decides.
  function connect(slot, target, targetSlot) {
    const base = LGraphNode.prototype.connect;
    if (loading || this.tgMissing || !target || target.tgMissing) return base.call(this, slot, target, targetSlot);
    const outIndex = typeof slot === "string" ? this.findOutputSlot(slot) : slot;
    const out = this.outputs && this.outputs[outIndex];
    const inIndex = typeof targetSlot === "string" ? target.findInputSlot(targetSlot) : targetSlot || 0;
    const input = target.inputs && target.inputs[inIndex];
    if (out && input && !TG.canConnect(out.type, input.type)) {
      const adapter = adapterFor(out.type, input.type);
      if (adapter) return insertAdapter(this, outIndex, target, inIndex, adapter);
      refuse(idOf(this) + "." + out.name + " gives " + article(out.type) + " " + out.type + ", and " + idOf(target) +
        "." + input.name + " takes " + article(input.type) + " " + input.type);
      return null;
    }
    if (input) {
      const conflict = groupConflict(target, input.name);
      if (conflict) {
        refuse(groupMessage(target, input.name, conflict));
        return null;
      }
    }
    return base.call(this, slot, target, targetSlot);
  }

  // Link `source.out -> adapter -> target.in`, the adapter placed between them.
  function insertAdapter(source, outIndex, target, inIndex, adapterType) {
    const base = LGraphNode.prototype.connect;
    const node = LiteGraph.createNode(registeredName(adapterType));
    node.title = uniqueId(snakeCase(adapterType));
    node.tgId = node.title;
    node.tgOrder = order++;
    const a = source.getConnectionPos(false, outIndex), b = target.getConnectionPos(true, inIndex);
    const others = graph._nodes.filter(function (n) { return n !== source && n !== target; });
    node.pos = TG.freeSpot(others, node.size[0], node.size[1], [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2]);
    graph.add(node);
    base.call(source, outIndex, node, 0);
    const link = base.call(node, 0, target, inIndex);
    TG.toast("inserted " + node.title + " (" + adapterType + "): " + article(source.outputs[outIndex].type) + " " +
      source.outputs[outIndex].type + " output feeds " + idOf(target) + "." + target.inputs[inIndex].name + " (" +
      target.inputs[inIndex].type + ") through it");
    TG.changed();
    return link;
  }

  // Dropping a link on a node's body: the first free compatible input (or output).
  function connectByType(slot, target, outType) {
    if (!target.inputs || !target.inputs.length) {
      refuse(idOf(target) + " has no inputs");
      return null;
    }
    const compatible = target.inputs.filter(function (s) { return TG.canConnect(outType, s.type); });
    const free = compatible.filter(function (s) { return s.link == null && !groupConflict(target, s.name); });
    if (free.length) return this.connect(slot, target, target.findInputSlot(free[0].name));
    if (compatible.length) {
      const s = compatible[0];
      const conflict = groupConflict(target, s.name);
      refuse(conflict ? groupMessage(target, s.name, conflict)
        : idOf(target) + "." + s.name + " is already connected (drop onto the input itself to replace its edge)");
      return null;
    }
    for (let i = 0; i < target.inputs.length; i++) {
      const adapter = adapterFor(outType, target.inputs[i].type);
      if (adapter && target.inputs[i].link == null && !groupConflict(target, target.inputs[i].name)) {
        return insertAdapter(this, typeof slot === "string" ? this.findOutputSlot(slot) : slot, target, i, adapter);
      }
    }
    refuse("no input of " + idOf(target) + " takes " + article(outType) + " " + outType + " (its inputs: " +
      target.inputs.map(function (s) { return s.name + ": " + s.type; }).join(", ") + ")");
    return null;
  }

  function connectByTypeOutput(slot, source, inType) {
    if (!source.outputs) return null;
    const i = source.outputs.findIndex(function (s) { return TG.canConnect(s.type, inType); });
    if (i < 0) {
      refuse("no output of " + idOf(source) + " feeds " + idOf(this) + "." + this.inputs[slot].name + " (" + inType +
        "; its outputs: " + source.outputs.map(function (s) { return s.name + ": " + s.type; }).join(", ") + ")");
      return null;
    }
    return source.connect(i, this, slot);
  }

  function onConnectionsChange(kind, slot, connected) {
    // An edge replaces a literal written for the same input.
    if (kind === LiteGraph.INPUT && connected && this.inputs[slot]) {
      const name = this.inputs[slot].name;
      if (has(this.properties.literals, name) && !loading) {
        delete this.properties.literals[name];
        TG.buildWidgets(this, schema.nodes[this.tgType]);
      }
    }
    TG.changed();
  }

  // --- drawing on the nodes ---------------------------------------------------------------

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

  const MESSAGE_LINES = 3; // per message
  const MESSAGES = 4; // per node

  function messagesOf(node) {
    const out = [];
    const st = node.tgStatus;
    if (st && (st.state === "failed" || st.state === "skipped" || st.state === "cancelled") && st.error) out.push(st.error);
    return out.concat(node.tgProblems || []).slice(0, MESSAGES);
  }

  // Height of the text drawn under a node (problems, errors), for the layout.
  function belowHeight() {
    const messages = messagesOf(this);
    if (!messages.length) return 0;
    const ctx = canvas.canvas.getContext("2d");
    ctx.save();
    ctx.font = "12px sans-serif";
    let lines = 0;
    for (const m of messages) lines += Math.min(MESSAGE_LINES, wrap(ctx, m, this.size[0]).length);
    ctx.restore();
    return 8 + lines * 15;
  }

  function previewHeight(node) {
    const p = node.tgPreview;
    if (!p) return 0;
    if (p.kind === "image") return PREVIEW_IMAGE_H + 22;
    if (p.kind === "curves") return (p.panels || []).length * (PANEL_H + 4) + 20;
    return (p.lines || []).length * 15 + 20;
  }

  function fitHeight(node) {
    node.tgBaseHeight = node.computeSize()[1];
    node.size[1] = node.tgBaseHeight + previewHeight(node);
  }
  TG.afterWidgets = fitHeight;

  function drawPreview(ctx, node) {
    const p = node.tgPreview;
    const x = 6, w = node.size[0] - 12;
    let y = node.tgBaseHeight + 4;
    ctx.save();
    ctx.fillStyle = "rgba(0,0,0,0.25)";
    ctx.fillRect(x - 2, y - 2, w + 4, previewHeight(node) - 4);
    if (p.kind === "image" && p.img && p.img.complete && p.img.naturalWidth) {
      const scale = Math.min(w / p.img.naturalWidth, PREVIEW_IMAGE_H / p.img.naturalHeight);
      const iw = p.img.naturalWidth * scale, ih = p.img.naturalHeight * scale;
      ctx.drawImage(p.img, x + (w - iw) / 2, y, iw, ih);
      y += PREVIEW_IMAGE_H;
    } else if (p.kind === "curves") {
      for (const panel of p.panels || []) {
        ctx.strokeStyle = "rgba(255,255,255,0.12)";
        ctx.strokeRect(x, y, w, PANEL_H);
        (panel.lines || []).forEach(function (line, k) {
          ctx.strokeStyle = CURVE_COLORS[k % CURVE_COLORS.length];
          ctx.lineWidth = 1.2;
          ctx.beginPath();
          line.forEach(function (v, i) {
            const px = x + (line.length > 1 ? (i / (line.length - 1)) * w : 0);
            const py = y + PANEL_H - 3 - v * (PANEL_H - 6);
            if (i) ctx.lineTo(px, py); else ctx.moveTo(px, py);
          });
          ctx.stroke();
        });
        if (panel.title) {
          ctx.font = "10px sans-serif";
          ctx.fillStyle = "rgba(255,255,255,0.7)";
          ctx.textAlign = "left";
          ctx.fillText(panel.title, x + 3, y + 10);
        }
        y += PANEL_H + 4;
      }
    } else if (p.kind === "text") {
      ctx.font = "12px monospace";
      ctx.fillStyle = "#d6d9de";
      ctx.textAlign = "left";
      for (const line of p.lines || []) {
        ctx.fillText(line, x + 2, y + 11);
        y += 15;
      }
    }
    if (p.label) {
      ctx.font = "10px sans-serif";
      ctx.fillStyle = "rgba(255,255,255,0.6)";
      ctx.textAlign = "left";
      ctx.fillText(p.label + (p.port ? "  ·  " + p.port : ""), x, y + 12);
    }
    ctx.restore();
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
    if (this.tgPreview) drawPreview(ctx, this);
    const st = this.tgStatus;
    if (st && st.state && st.state !== "pending") {
      const color = STATE_COLORS[st.state] || "#666";
      drawPill(ctx, this.size[0], -th - 21, statusLabel(st), color);
      if (st.state === "running" && st.n) {
        ctx.fillStyle = color;
        ctx.fillRect(0, this.size[1] - 4, this.size[0] * Math.min(1, st.i / st.n), 4);
      }
    }
    if (this.tgProblems && this.tgProblems.length) {
      ctx.strokeStyle = STATE_COLORS.failed;
      ctx.lineWidth = 2;
      ctx.strokeRect(-3, -th - 3, this.size[0] + 6, this.size[1] + th + 6);
    }
    const messages = messagesOf(this);
    if (messages.length) {
      this.tgDrawMessages(ctx, messages, this.tgProblems.length || !st ? "#ff8a8a" : STATE_COLORS[st.state] || "#ff8a8a");
    }
  }

  function drawMessages(ctx, messages, color) {
    ctx.font = "12px sans-serif";
    ctx.fillStyle = color;
    ctx.textAlign = "left";
    let y = this.size[1] + 18;
    for (const m of messages) {
      for (const line of wrap(ctx, m, this.size[0]).slice(0, MESSAGE_LINES)) {
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
      const grouped = (spec.exactly_one_of || []).some(function (g) { return g.indexOf(name) >= 0; });
      node.addInput(name, port.type, { color_on: color, color_off: color,
        label: grouped ? name + " ⊕" : port.optional ? name + "?" : name });
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
    proto.tgBelowHeight = belowHeight;
    proto.onConfigure = function () { TG.buildWidgets(this, spec); }; // after copy/paste
    proto.onAdded = onAdded;
    proto.onParamChanged = function () { TG.changed(); };
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
  MissingNode.prototype.tgBelowHeight = belowHeight;
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

  // Whether the user has placed anything: then every node's position is written.
  function placed() {
    return TG.state.positioned || graph._nodes.some(function (n) {
      return !n.tgHadPos && !(n.tgAutoPos && n.tgAutoPos[0] === n.pos[0] && n.tgAutoPos[1] === n.pos[1]);
    });
  }

  function layoutOf(n, write) {
    if (!write && !n.tgHadPos) return n.tgLayoutOrig ? Object.assign({}, n.tgLayoutOrig) : null;
    const x = Math.round(n.pos[0]), y = Math.round(n.pos[1]);
    const loaded = n.tgLoadedXY;
    const same = loaded && Math.round(loaded[0]) === x && Math.round(loaded[1]) === y;
    const out = {};
    for (const [k, v] of Object.entries(n.tgLayoutOrig || {})) out[k] = v; // the file's key order
    out.x = same ? loaded[0] : x;
    out.y = same ? loaded[1] : y;
    return out;
  }

  function groupsJSON() {
    return graph._groups.map(function (g) {
      const b = Array.from(g._bounding, Math.round);
      const was = g.tgLoaded;
      if (was && was.title === g.title && Array.isArray(was.bounding) &&
          was.bounding.map(Math.round).join() === b.join() && (was.color === undefined || was.color === g.color)) return was;
      const out = { title: g.title, bounding: b };
      if (g.color) out.color = g.color;
      return out;
    });
  }

  TG.serialize = function (withView) {
    normaliseIds();
    const write = placed();
    const nodes = orderedNodes().map(function (n) {
      const inputs = {};
      for (const slot of n.inputs || []) {
        const link = slot.link != null ? graph.links[slot.link] : null;
        if (link) {
          const from = graph.getNodeById(link.origin_id);
          inputs[slot.name] = { node: idOf(from), port: from.outputs[link.origin_slot].name };
        } else if (has(n.properties.literals, slot.name)) {
          inputs[slot.name] = n.properties.literals[slot.name];
        } else if (n.properties.rawInputs[slot.name]) {
          inputs[slot.name] = n.properties.rawInputs[slot.name];
        }
      }
      for (const [name, value] of Object.entries(n.properties.literals)) {
        if (!(name in inputs)) inputs[name] = value; // literal for a port the node does not have
      }
      const spec = { id: idOf(n), type: n.tgType, params: Object.assign({}, n.properties.params), inputs: inputs,
                     layout: layoutOf(n, write) };
      if (withView) {
        spec.pos = [n.pos[0], n.pos[1]];
        spec.tg = { hadPos: !!n.tgHadPos, autoPos: n.tgAutoPos || null, loadedXY: n.tgLoadedXY || null,
                    layoutOrig: n.tgLayoutOrig === undefined ? null : n.tgLayoutOrig };
      }
      return spec;
    });
    let layout = TG.state.layout ? Object.assign({}, TG.state.layout) : null;
    const groups = groupsJSON();
    if (groups.length) {
      layout = layout || {};
      layout.groups = groups;
    } else if (layout && has(layout, "groups")) {
      delete layout.groups;
      if (!Object.keys(layout).length) layout = null;
    }
    const out = { path: TG.state.path, description: TG.state.description, nodes: nodes, layout: layout };
    if (withView) out.positioned = TG.state.positioned;
    return out;
  };

  TG.serializeJSON = function () { return JSON.stringify(TG.serialize()); };

  // For Save: the graph sent, which becomes the saved state when the server says it wrote it.
  TG.serializeForSave = function () {
    lastSaveJSON = TG.serializeJSON();
    return lastSaveJSON;
  };

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
      node.tgBaseHeight = node.size[1];
    }
    for (const [name, src] of Object.entries(spec.inputs || {})) {
      if (!(src && typeof src === "object" && "node" in src)) node.properties.literals[name] = src;
    }
    const layout = spec.layout && typeof spec.layout === "object" ? spec.layout : null;
    const rest = Object.assign({}, layout || {});
    delete rest.x;
    delete rest.y;
    node.properties.layout = rest;
    node.tgLayoutOrig = layout ? Object.assign({}, layout) : null;
    node.title = spec.id;
    node.tgId = spec.id;
    node.tgOrder = order++;
    const view = spec.tg; // an undo snapshot carries what the file said
    if (view) {
      node.tgHadPos = view.hadPos;
      node.tgAutoPos = view.autoPos;
      node.tgLoadedXY = view.loadedXY;
      node.tgLayoutOrig = view.layoutOrig;
    } else {
      node.tgHadPos = !!spec.pos;
      node.tgLoadedXY = !spec.pos ? null : layout && "x" in layout && "y" in layout ? [layout.x, layout.y] : [spec.pos[0], spec.pos[1]];
    }
    if (spec.pos) node.pos = [spec.pos[0], spec.pos[1]];
    else node.tgUnplaced = true;
    if (!node.tgMissing) TG.buildWidgets(node, schema.nodes[spec.type]);
    return node;
  }

  TG.load = function (g, opts) {
    opts = opts || {};
    loading = true;
    try {
      graph.clear();
      TG.state.path = g.path || null;
      TG.state.description = g.description || "";
      TG.state.layout = g.layout && typeof g.layout === "object" ? Object.assign({}, g.layout) : null;
      TG.state.positioned = !!g.positioned;
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
      for (const gr of (TG.state.layout && TG.state.layout.groups) || []) {
        if (!gr || !Array.isArray(gr.bounding) || gr.bounding.length !== 4) continue;
        const group = new LGraphGroup(String(gr.title || "Group"));
        group.configure({ title: String(gr.title || "Group"), bounding: gr.bounding, color: gr.color || group.color });
        group.tgLoaded = gr;
        graph.add(group);
      }
    } finally {
      loading = false;
    }
    applyView();
    showPath();
    if (!opts.restore) {
      placeUnplaced();
      TG.fit();
    }
    updateHint();
    graph.setDirtyCanvas(true, true);
  };

  // Status, problems and previews are kept by node id, so they survive undo and reloads.
  function applyView() {
    const map = nodesById();
    for (const [id, n] of Object.entries(map)) {
      n.tgStatus = (lastStatus.nodes || {})[id] || null;
      n.boxcolor = n.tgStatus && n.tgStatus.state !== "pending" ? STATE_COLORS[n.tgStatus.state] : undefined;
      n.tgProblems = [];
      n.tgPreview = previews[id] || null;
      if (!n.tgMissing) fitHeight(n);
    }
    for (const p of lastProblems) if (p.node_id && map[p.node_id]) map[p.node_id].tgProblems.push(p.message);
  }

  // Nodes the file gave no position: a layered layout around those that have one.
  function placeUnplaced() {
    const todo = graph._nodes.filter(function (n) { return n.tgUnplaced; });
    if (!todo.length) return;
    TG.arrange(todo, false);
  }

  // Lay out `nodes` (default: all) in layers; `byUser` makes the positions part of the file.
  TG.arrange = function (nodes, byUser) {
    nodes = nodes || graph._nodes;
    const moving = new Set(nodes);
    const th = LiteGraph.NODE_TITLE_HEIGHT;
    const items = orderedNodes().filter(function (n) { return moving.has(n); }).map(function (n) {
      return { id: idOf(n), w: n.size[0], h: n.size[1] + th + n.tgBelowHeight() };
    });
    const edges = [];
    for (const link of Object.values(graph.links || {})) {
      if (!link) continue;
      const a = graph.getNodeById(link.origin_id), b = graph.getNodeById(link.target_id);
      if (a && b && moving.has(a) && moving.has(b)) edges.push([idOf(a), idOf(b)]);
    }
    const fixed = graph._nodes.filter(function (n) { return !moving.has(n); });
    let origin = [40, 40];
    if (fixed.length) { // next to what is placed already
      const right = Math.max.apply(null, fixed.map(function (n) { return n.pos[0] + n.size[0]; }));
      const top = Math.min.apply(null, fixed.map(function (n) { return n.pos[1]; }));
      origin = [right + 80, top];
    }
    const pos = TG.layeredLayout(items, edges, [origin[0], origin[1] + th]);
    const map = nodesById();
    for (const [id, p] of Object.entries(pos)) {
      const n = map[id];
      n.pos = [Math.round(p[0]), Math.round(p[1])];
      n.tgAutoPos = [n.pos[0], n.pos[1]];
      n.tgUnplaced = false;
    }
    if (byUser) {
      TG.state.positioned = true;
      TG.changed();
    }
    graph.setDirtyCanvas(true, true);
  };

  // --- adding nodes --------------------------------------------------------------------------

  TG.addNode = function (type, pos) {
    const node = LiteGraph.createNode(registeredName(type));
    if (!node) return null;
    // An add is one step of its own: settle an edit still waiting for its snapshot, which a busy
    // browser may not have taken yet (input events run before timers), so two quick adds stay two undos.
    if (changeTimer !== null) record();
    node.title = uniqueId(snakeCase(type));
    node.tgId = node.title;
    node.tgOrder = order++;
    if (!pos) { // the middle of the view, or the nearest place there that is free
      const c = canvas.canvas;
      const centre = canvas.ds.convertCanvasToOffset([c.width / 2, c.height / 2]);
      pos = TG.freeSpot(graph._nodes, node.size[0], node.size[1], centre);
    }
    node.pos = [Math.round(pos[0]), Math.round(pos[1])];
    graph.add(node);
    canvas.selectNode(node);
    updateHint();
    graph.setDirtyCanvas(true, true);
    TG.changed();
    return node;
  };

  TG.groupSelected = function () {
    const nodes = Object.values(canvas.selected_nodes || {});
    if (!nodes.length) {
      TG.toast("select the nodes to group first (click, Ctrl+click or drag a box with Ctrl)", "error");
      return null;
    }
    const th = LiteGraph.NODE_TITLE_HEIGHT;
    const boxes = nodes.map(TG.nodeBox);
    const x0 = Math.min.apply(null, boxes.map(function (b) { return b[0]; })) - 20;
    const y0 = Math.min.apply(null, boxes.map(function (b) { return b[1]; })) - 20 - th;
    const x1 = Math.max.apply(null, boxes.map(function (b) { return b[0] + b[2]; })) + 20;
    const y1 = Math.max.apply(null, boxes.map(function (b) { return b[1] + b[3]; })) + 20;
    const group = new LGraphGroup("group " + (graph._groups.length + 1));
    group.configure({ title: group.title, bounding: [x0, y0, x1 - x0, y1 - y0], color: group.color });
    graph.add(group);
    graph.setDirtyCanvas(true, true);
    TG.changed();
    return group;
  };

  // --- view ------------------------------------------------------------------------------------

  const READABLE_SCALE = 0.6; // below this litegraph draws nodes without their text

  TG.fit = function () {
    const nodes = graph._nodes;
    const c = canvas.canvas;
    if (!nodes.length || !c.width) {
      canvas.ds.offset = [0, 0];
      canvas.ds.scale = 1;
      return;
    }
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of nodes) {
      const b = TG.nodeBox(n);
      x0 = Math.min(x0, b[0]);
      y0 = Math.min(y0, b[1] - 24); // the status pill
      x1 = Math.max(x1, b[0] + b[2]);
      y1 = Math.max(y1, b[1] + b[3]);
    }
    const margin = 30;
    const fits = Math.min(1, (c.width - 2 * margin) / (x1 - x0), (c.height - 2 * margin) / (y1 - y0));
    const scale = Math.max(READABLE_SCALE, fits);
    canvas.ds.scale = scale;
    // all of it centred when it fits; otherwise its top-left corner, readable (pan to see the rest)
    const ox = fits >= READABLE_SCALE ? (c.width / scale - (x1 - x0)) / 2 - x0 : margin / scale - x0;
    const oy = fits >= READABLE_SCALE ? (c.height / scale - (y1 - y0)) / 2 - y0 : (margin + 20) / scale - y0;
    canvas.ds.offset = [ox, oy];
    canvas.setDirty(true, true);
  };

  function showPath() {
    const label = root.querySelector(".tg-path");
    label.textContent = (TG.state.path || "untitled (not saved)") + (TG.isDirty() ? " • unsaved changes" : "");
  }

  function updateHint() {
    const hint = root && root.querySelector(".tg-hint");
    if (!hint) return;
    hint.textContent = graph && graph._nodes.length ? "" :
      "An empty workflow. Click a node in the palette (or drag it here), or open a workflow above. " +
      "Drag from an output dot to an input dot to connect. Ctrl+Enter runs, Ctrl+S saves, Ctrl+Z undoes.";
    hint.style.display = hint.textContent ? "block" : "none";
  }

  TG.toast = function (message, kind) {
    if (!root) return;
    const box = root.querySelector(".tg-toast");
    box.textContent = message;
    box.className = "tg-toast visible" + (kind === "error" ? " error" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.className = "tg-toast"; }, kind === "error" ? 6000 : 4000);
  };

  // --- edits: history and unsaved changes ----------------------------------------------------

  function snapshot() { return JSON.stringify(TG.serialize(true)); }

  TG.isDirty = function () { return baseline !== null && graph && TG.serializeJSON() !== baseline; };

  // Called after anything that may have changed the graph; recorded once things settle.
  TG.changed = function () {
    if (loading || !graph) return;
    clearTimeout(changeTimer);
    changeTimer = setTimeout(record, 60);
  };

  function record() {
    clearTimeout(changeTimer);
    changeTimer = null;
    if (loading || !graph) return;
    history.record(snapshot());
    showPath();
    updateHint();
  }

  function restore(state) {
    if (state === null) return;
    const view = [canvas.ds.offset[0], canvas.ds.offset[1], canvas.ds.scale];
    TG.load(JSON.parse(state), { restore: true });
    canvas.ds.offset = [view[0], view[1]];
    canvas.ds.scale = view[2];
    showPath();
    graph.setDirtyCanvas(true, true);
  }

  TG.undo = function () { record(); restore(history.undo()); };
  TG.redo = function () { restore(history.redo()); };
  TG.canUndo = function () { return history.canUndo(); };

  TG.confirmDiscard = function () {
    if (!TG.isDirty()) return true;
    return window.confirm("This workflow has unsaved changes. Discard them?");
  };

  // --- commands from the server ------------------------------------------------------------

  function nodesById() {
    const map = {};
    for (const n of graph._nodes) map[idOf(n)] = n;
    return map;
  }

  TG.setStatus = function (status) {
    lastStatus = status || {};
    applyView();
    graph.setDirtyCanvas(true, true);
  };

  TG.setProblems = function (problems) {
    lastProblems = problems || [];
    applyView();
    graph.setDirtyCanvas(true, true);
  };

  TG.setPreviews = function (more) {
    for (const [id, p] of Object.entries(more || {})) {
      if (p.kind === "image" && p.src) {
        p.img = new Image();
        p.img.onload = function () { graph.setDirtyCanvas(true, true); };
        p.img.src = p.src;
      }
      previews[id] = p;
    }
    applyView();
    // Nodes grow by their preview. Laid out by the editor (nothing placed by the user or the
    // file): lay them out again, so that none covers another.
    if (Object.keys(more || {}).length && graph._nodes.every(function (n) { return !n.tgHadPos; }) && !placed()) {
      TG.arrange(null, false);
    }
    graph.setDirtyCanvas(true, true);
  };

  function rememberPath(path) {
    if (path && path.indexOf("workflows/") === 0) {
      try { window.localStorage.setItem(LAST_KEY, path); } catch (e) { /* private mode: no memory */ }
    }
  }

  TG.apply = function (cmd) {
    if (!cmd || typeof cmd !== "object" || cmd.seq === lastSeq) return;
    lastSeq = cmd.seq;
    if (cmd.graph || cmd.reset) {
      previews = {};
      lastStatus = {};
    }
    if (cmd.problems) lastProblems = cmd.problems;
    if (cmd.status) lastStatus = cmd.status;
    if (cmd.graph) {
      TG.load(cmd.graph);
      history.reset(snapshot());
      baseline = TG.serializeJSON();
      rememberPath(TG.state.path);
    }
    if ("path" in cmd) {
      TG.state.path = cmd.path;
      rememberPath(cmd.path);
    }
    if (cmd.previews) TG.setPreviews(cmd.previews);
    else applyView();
    if (cmd.saved) baseline = cmd.graph || !lastSaveJSON ? TG.serializeJSON() : savedAs(lastSaveJSON, TG.state.path);
    showPath();
    graph.setDirtyCanvas(true, true);
  };

  // The graph that was sent to Save, under the name it was saved as.
  function savedAs(json, path) {
    const g = JSON.parse(json);
    g.path = path;
    return JSON.stringify(g);
  }

  // State for tests and debugging: what each node shows.
  TG.nodeStates = function () {
    const out = {};
    for (const [id, n] of Object.entries(nodesById())) {
      const st = n.tgStatus || {};
      const p = n.tgPreview;
      out[id] = { status: st.state || null, i: st.i, n: st.n, error: st.error || "", problems: n.tgProblems.slice(),
                  preview: p ? p.kind : null, previewReady: !!(p && (p.kind !== "image" || (p.img && p.img.complete && p.img.naturalWidth))) };
    }
    return out;
  };

  TG.nodeBoxes = function () {
    const out = {};
    for (const [id, n] of Object.entries(nodesById())) out[id] = TG.nodeBox(n);
    return out;
  };

  // Where a slot is on the page (for driving the editor with a real mouse in tests).
  TG.slotPagePosition = function (nodeId, isInput, name) {
    const n = nodesById()[nodeId];
    const slot = isInput ? n.findInputSlot(name) : n.findOutputSlot(name);
    const p = n.getConnectionPos(isInput, slot);
    return TG.canvasToPage(p);
  };

  TG.canvasToPage = function (p) {
    const s = canvas.ds.convertOffsetToCanvas(p);
    const r = canvas.canvas.getBoundingClientRect();
    return [r.left + s[0] * (r.width / canvas.canvas.width), r.top + s[1] * (r.height / canvas.canvas.height)];
  };

  TG.widgetPagePosition = function (nodeId, name) {
    const n = nodesById()[nodeId];
    const w = n.widgets.find(function (x) { return x.name === name; });
    // litegraph sets last_y while drawing; a node placed since the last frame has none yet.
    if (typeof w.last_y !== "number") canvas.draw(true, true);
    return TG.canvasToPage([n.pos[0] + n.size[0] / 2, n.pos[1] + w.last_y + LiteGraph.NODE_WIDGET_HEIGHT / 2]);
  };

  // --- mounting --------------------------------------------------------------------------------

  function fitCanvasToBox(wrapEl, canvasEl) {
    const r = wrapEl.getBoundingClientRect();
    const w = Math.max(100, Math.floor(r.width));
    const h = Math.max(100, Math.floor(r.height));
    if (canvasEl.width !== w || canvasEl.height !== h) canvas.resize(w, h);
  }

  function typing(el) {
    return !!el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }

  function clickButton(id) {
    const button = document.getElementById(id);
    if (button) button.click();
  }

  // Ctrl/Cmd+Enter runs, Ctrl/Cmd+S saves, Ctrl/Cmd+Z undoes, Ctrl/Cmd+Shift+Z or Ctrl+Y redoes.
  function onKey(e) {
    if (!(e.ctrlKey || e.metaKey) || e.altKey) return;
    const key = e.key.toLowerCase();
    if (key === "enter") {
      e.preventDefault();
      clickButton("tg-run");
    } else if (key === "s") {
      e.preventDefault();
      clickButton("tg-save");
    } else if ((key === "z" || key === "y") && !typing(e.target) && !document.querySelector(".graphdialog")) {
      e.preventDefault();
      if (key === "y" || e.shiftKey) TG.redo();
      else TG.undo();
    }
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
    canvas.onNodeMoved = function () { TG.changed(); };
    graph.onNodeAdded = function () { updateHint(); TG.changed(); };
    graph.onNodeRemoved = function () { updateHint(); TG.changed(); };
    fitCanvasToBox(wrapEl, canvasEl);
    new ResizeObserver(function () { fitCanvasToBox(wrapEl, canvasEl); }).observe(wrapEl);
    // Anything else the mouse or keyboard did (a title renamed, a group moved) is caught here.
    wrapEl.addEventListener("mouseup", function () { TG.changed(); });
    wrapEl.addEventListener("keyup", function () { TG.changed(); });

    wrapEl.addEventListener("dragover", function (e) {
      if (e.dataTransfer.types.indexOf(TG.PALETTE_DRAG_TYPE) >= 0) e.preventDefault();
    });
    wrapEl.addEventListener("drop", function (e) {
      const type = e.dataTransfer.getData(TG.PALETTE_DRAG_TYPE);
      if (!type) return;
      e.preventDefault();
      TG.addNode(type, canvas.convertEventToCanvasOffset(e));
    });
    element.querySelector(".tg-tools").addEventListener("click", function (e) {
      const action = e.target && e.target.dataset ? e.target.dataset.action : null;
      if (action === "undo") TG.undo();
      else if (action === "redo") TG.redo();
      else if (action === "layout") { TG.arrange(null, true); TG.fit(); }
      else if (action === "group") TG.groupSelected();
      else if (action === "fit") TG.fit();
    });
    if (!TG.keysBound) {
      document.addEventListener("keydown", onKey, true);
      window.addEventListener("beforeunload", function (e) {
        if (TG.isDirty()) { e.preventDefault(); e.returnValue = ""; }
      });
      TG.keysBound = true;
    }

    TG.palette = new TG.Palette(element, schema, function (type) { TG.addNode(type); });
    if (schema.plugin_errors && schema.plugin_errors.length) {
      TG.toast(schema.plugin_errors.length + " plugin(s) failed to load: see the message below the editor", "error");
    }
    TG.graph = graph;
    TG.canvas = canvas;
    history.reset(snapshot());
    baseline = TG.serializeJSON();
    showPath();
    updateHint();
    if (host.watch) host.watch("value", function () { TG.apply(host.props.value); });
    TG.apply(host.props && host.props.value);
  };
})();
