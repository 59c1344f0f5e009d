/* Parameter widgets on editor nodes.
 *
 * The server derives one widget spec per parameter from the node's pydantic JSON schema
 * (kind: combo, toggle, int, float, file, text or yaml; bounds, choices, default). A node keeps
 * only the parameters the workflow sets (node.properties.params): a widget shows the default
 * until it is changed, so a saved file lists what the user wrote and nothing more.
 * Values a JavaScript number cannot keep exactly travel as YAML text: {"$yaml": "5.0"}.
 */
(function () {
  "use strict";
  const TG = (window.TalkGraph = window.TalkGraph || {});
  const YAML = "$yaml";
  const MIN_NODE_WIDTH = 240;

  function isYamlBox(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v) &&
      Object.keys(v).length === 1 && typeof v[YAML] === "string";
  }

  // Text for a YAML widget: JSON is valid YAML, and YAML boxes are shown as written.
  function yamlText(v) {
    if (v === undefined) return "";
    return isYamlBox(v) ? v[YAML] : JSON.stringify(v);
  }

  function decimals(x) {
    if (typeof x !== "number" || !isFinite(x) || Number.isInteger(x)) return 0;
    const s = String(x);
    const e = s.indexOf("e-");
    if (e >= 0) return Number(s.slice(e + 2));
    return s.length - s.indexOf(".") - 1;
  }

  function setParam(node, name, value) {
    const params = node.properties.params;
    if (value === undefined) delete params[name];
    else params[name] = value;
    node.setDirtyCanvas(true, true);
    if (node.onParamChanged) node.onParamChanged(name, value);
  }

  function addNumber(node, spec, shown) {
    const isInt = spec.kind === "int";
    const opts = {
      precision: isInt ? 0 : Math.min(6, Math.max(3, decimals(shown), decimals(spec.default))),
      step: isInt ? 10 : 1, // litegraph moves by step / 10 per click
    };
    if (typeof spec.min === "number") opts.min = spec.min;
    if (typeof spec.max === "number") opts.max = spec.max;
    const w = node.addWidget("number", spec.name, typeof shown === "number" ? shown : 0, function (v) {
      if (isInt) {
        v = Math.round(v);
        w.value = v;
      }
      setParam(node, spec.name, v);
    }, opts);
    return w;
  }

  function addFile(node, spec, shown) {
    const w = node.addWidget("text", spec.name, shown === undefined || shown === null ? "" : String(shown), function (v) {
      setParam(node, spec.name, v === "" ? undefined : String(v));
    });
    if ((spec.mode === "read" || spec.mode === "read-path") && !spec.folder) { // a file to read: it may come from this machine
      node.addWidget("button", "upload " + spec.name + "…", null, function () {
        TG.pickFile(spec.extensions || [], function (path) {
          w.value = path;
          setParam(node, spec.name, path);
        });
      });
    }
    return w;
  }

  function addYaml(node, name, shown, onChange) {
    return node.addWidget("text", name, yamlText(shown), function (v) {
      onChange(String(v).trim() === "" ? undefined : { [YAML]: String(v) });
    });
  }

  // One widget for one parameter; a value the widget kind cannot hold exactly is edited as YAML.
  function addParamWidget(node, spec) {
    const params = node.properties.params;
    const has = Object.prototype.hasOwnProperty.call(params, spec.name);
    const shown = has ? params[spec.name] : spec.default;
    const kind = isYamlBox(shown) ? "yaml" : spec.kind;
    let w;
    switch (kind) {
      case "combo":
        w = node.addWidget("combo", spec.name, shown === undefined ? spec.choices[0] : shown,
          function (v) { setParam(node, spec.name, v); }, { values: spec.choices });
        break;
      case "toggle":
        w = node.addWidget("toggle", spec.name, !!shown, function (v) { setParam(node, spec.name, !!v); },
          { on: "true", off: "false" });
        break;
      case "int":
      case "float":
        w = addNumber(node, spec, shown);
        break;
      case "file":
        w = addFile(node, spec, shown);
        break;
      case "text":
        w = node.addWidget("text", spec.name, shown === undefined || shown === null ? "" : String(shown),
          function (v) { setParam(node, spec.name, String(v)); });
        break;
      default:
        w = addYaml(node, spec.name, shown, function (v) { setParam(node, spec.name, v); });
    }
    w.tgParam = spec.name;
    w.tgDescription = spec.description || "";
    return w;
  }

  // A literal input (a value written in the file instead of an edge), edited as YAML.
  function addLiteralWidget(node, name) {
    const w = addYaml(node, name + " (input)", node.properties.literals[name], function (v) {
      if (v === undefined) delete node.properties.literals[name];
      else node.properties.literals[name] = v;
      node.setDirtyCanvas(true, true);
      if (node.onParamChanged) node.onParamChanged(name, v);
    });
    w.tgLiteral = name;
    return w;
  }

  // (Re)build a node's widgets from its spec and current params/literals.
  TG.buildWidgets = function (node, spec) {
    node.widgets = [];
    for (const ws of spec ? spec.widgets : []) addParamWidget(node, ws);
    for (const name of Object.keys(node.properties.literals)) {
      const connected = node.inputs && node.inputs.some(function (s) { return s.name === name && s.link != null; });
      if (!connected) addLiteralWidget(node, name);
    }
    const size = node.computeSize();
    node.size = [Math.max(MIN_NODE_WIDTH, size[0], node.size ? node.size[0] : 0), size[1]];
    if (TG.afterWidgets) TG.afterWidgets(node); // room for a preview drawn under the widgets
  };

  // A file chooser whose file goes to the session's upload folder; `done` gets the server path.
  TG.pickFile = function (extensions, done) {
    const input = document.createElement("input");
    input.type = "file";
    if (extensions.length) input.accept = extensions.join(",");
    input.style.display = "none";
    document.body.appendChild(input);
    input.addEventListener("change", function () {
      const file = input.files && input.files[0];
      input.remove();
      if (!file) return;
      const body = new FormData();
      body.append("file", file, file.name);
      TG.toast("uploading " + file.name + "…");
      fetch("talkgraph/upload", { method: "POST", body: body, credentials: "same-origin" }) // the token travels as a cookie
        .then(function (r) { return r.ok ? r.json() : r.text().then(function (t) { throw new Error(t); }); })
        .then(function (res) { TG.toast("uploaded " + res.name); done(res.path); })
        .catch(function (err) { TG.toast("upload failed: " + err.message, "error"); });
    });
    input.click();
  };
})();
