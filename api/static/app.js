// ConvLens web page: the catalogue, one method at a time (inline or as a job), and a side-by-side comparison.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], methods: [], labels: {} };
const RAMPS = {  // CSS stops close to each matplotlib / OpenCV colour map, for the shared colour bar
  jet: "#00008f,#0000ff,#00ffff,#ffff00,#ff0000,#800000",
  viridis: "#440154,#3b528b,#21918c,#5ec962,#fde725",
  inferno: "#000004,#56106e,#bb3754,#f98e09,#fcffa4",
  magma: "#000004,#51127c,#b73779,#fc8961,#fcfdbf",
  turbo: "#30123b,#4686fb,#1ae4b6,#a2fc3c,#fabb39,#e4460a,#7a0403",
  hot: "#0b0000,#ff0000,#ffff00,#ffffff",
  gray: "#000000,#ffffff",
  coolwarm: "#3b4cc0,#7396f5,#b0cbfc,#dddddd,#f6bfa6,#ea7b60,#b40426",
};

function number(value) {
  return value === 0 ? "0" : Math.abs(value) >= 0.01 && Math.abs(value) < 1000 ? value.toPrecision(3) : value.toExponential(2);
}

const SIGNED_MEANING = "signed: red is evidence for the class, blue against it, the centre colour is 0";

// The numbers at the low end, middle and high end of a map's colour scale: its display_range (the raw values drawn at
// the two ends). A signed map (sign "all") is drawn symmetric about zero, so its middle is 0.
function scaleLabels(data, words) {
  const [low, high] = data.display_range;
  const middle = data.sign === "all" && low === -high ? 0 : (low + high) / 2;
  const labels = Object.assign(document.createElement("div"), { className: "colorbar-labels" });
  const values = words || [low, middle, high].map(number);
  for (const [index, name] of ["low", "middle", "high"].entries()) {
    labels.append(Object.assign(document.createElement("span"), { className: `colorbar-${name}`, textContent: values[index] }));
  }
  return labels;
}

// A colour bar: the ramp of the map's colormap, the values at its ends (or ``words`` for them) and what the colours mean.
function colorbar(data, words, meaning) {
  const bar = document.createElement("div");
  bar.className = "colorbar";
  bar.dataset.colormap = data.colormap;
  bar.dataset.sign = data.sign;
  bar.dataset.range = JSON.stringify(data.display_range);
  const ramp = Object.assign(document.createElement("div"), { className: "colorbar-ramp" });
  ramp.style.background = `linear-gradient(to right, ${RAMPS[data.colormap] || RAMPS.gray})`;
  bar.append(ramp, scaleLabels(data, words), Object.assign(document.createElement("p"), { className: "colorbar-meaning",
    textContent: meaning || (data.sign === "all" ? SIGNED_MEANING : `${data.sign || "unsigned"} map, ${data.normalization} scale`) }));
  return bar;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) throw new Error(body.code ? `${body.code}: ${body.detail}` : `HTTP ${response.status}`);
  return body;
}

function option(select, value, text, selected) {
  const item = new Option(text || value, value, selected, selected);
  select.add(item);
}

function showError(error) {
  $("error").hidden = !error;
  $("error").textContent = error ? String(error.message || error) : "";
}

function figure(src, caption, download) {
  const box = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  img.dataset.artifact = caption;
  const text = document.createElement("figcaption");
  text.textContent = caption;
  if (download) {
    const link = document.createElement("a");
    link.href = src;
    link.download = download;
    link.textContent = "download";
    text.append(link);
  }
  box.append(img, text);
  return box;
}

// ---- catalogue --------------------------------------------------------------------------------

async function load() {
  const [models, methods] = await Promise.all([api("/v1/models"), api("/v1/methods")]);
  state.models = models.models;
  state.methods = methods.methods;
  for (const select of [$("model"), $("compare-model")]) {
    for (const model of state.models) option(select, model.name, model.name, model.name === "efficientnet_lite0");
  }
  for (const method of state.methods) option($("method"), method.name, `${method.name} (${method.category}${method.inline ? "" : ", job"})`, method.name === "saliency");
  for (const method of state.methods.filter((m) => m.category === "attribute" && m.inline)) {
    const label = document.createElement("label");
    label.className = "check";
    label.innerHTML = `<input type="checkbox" name="compare" value="${method.name}"${method.compare ? " checked" : ""}> ${method.name}`;
    $("compare-methods").append(label);
  }
  const shared = state.methods.find((m) => m.name === "saliency") || state.methods.find((m) => m.category === "attribute");
  if (shared) {
    const props = shared.params_schema.properties;
    for (const value of enumValues(props.normalization)) option($("compare-normalization"), value, value, value === props.normalization.default);
    for (const value of enumValues(props.colormap)) option($("compare-colormap"), value, value, value === props.colormap.default);
    state.compareDefaults = { normalization: props.normalization.default, colormap: props.colormap.default };
  }
  renderMethod();
  $("status").textContent = `${state.models.length} models, ${state.methods.length} methods`;
}

function currentMethod() {
  return state.methods.find((m) => m.name === $("method").value);
}

function renderMethod() {
  const method = currentMethod();
  $("method-summary").textContent = method.summary;
  const slots = $("slots");
  slots.replaceChildren();
  for (const slot of method.inputs) {
    const label = document.createElement("label");
    label.textContent = `${slot.name}${slot.many ? ` (${slot.min_count}..${slot.max_count} pictures)` : ""}${slot.optional ? " (optional)" : ""}`;
    const input = document.createElement("input");
    input.type = "file";
    input.accept = "image/*";
    input.id = `slot-${slot.name}`;
    input.multiple = slot.many;
    input.title = slot.description;
    label.append(input);
    slots.append(label);
  }
  const groups = settingGroups(method);
  for (const [name, schema] of Object.entries(method.params_schema.properties || {})) {
    const input = CLASS_PARAMS[name] ? classPicker(name, schema, CLASS_PARAMS[name]) : paramInput(name, schema);
    if (input) groups[GROUPS[schema.group] ? schema.group : "method"].append(setting(name, schema, input));
  }
  $("params").replaceChildren(...Object.values(groups).filter((box) => box.querySelector("[data-param]")).map((box) => box.closest(".group")));
  const rare = $("params").querySelector("details.group");
  if (rare) rare.querySelector("summary").textContent = `Advanced: ${rare.querySelectorAll("[data-param]").length} settings rarely changed (each explained)`;
  if (!method.inline && $("model").value === "efficientnet_lite0" && method.category === "synthesize" && method.name !== "class_visualization") {
    $("model").value = "vgg19";
  }
}

// The groups settings are shown in, in order: a field's schema "group" (engine/params.py) files it; unmarked fields are the
// method's own settings; "advanced" ones are folded away.
const GROUPS = { target: "What to explain", picture: "Picture", method: "Method settings", quality: "Quality and speed", advanced: "Advanced" };

// One empty box of fields per group (the advanced one inside a closed <details>), keyed by group.
function settingGroups(method) {
  const boxes = {};
  for (const [key, title] of Object.entries(GROUPS)) {
    const group = document.createElement(key === "advanced" ? "details" : "fieldset");
    group.className = "group";
    group.dataset.group = key;
    const heading = key === "target" && method.category !== "attribute" ? "What to show" : title;
    group.append(Object.assign(document.createElement(key === "advanced" ? "summary" : "legend"), { textContent: heading }));
    boxes[key] = group.appendChild(Object.assign(document.createElement("div"), { className: "fields" }));
  }
  return boxes;
}

// A setting as a person reads it: its title in words, the input, and the schema's description in plain words under it
// (the API name in the tooltip).
function setting(name, schema, input) {
  const label = document.createElement("label");
  label.className = input.type === "checkbox" ? "setting check" : "setting";
  label.title = `${name} in the API`;
  const title = CLASS_PARAMS[name] === "many" ? "Classes to visualise" : CLASS_PARAMS[name] ? "Class" : schema.title || name;
  const words = title.charAt(0) + title.slice(1).toLowerCase();
  label.append(Object.assign(document.createElement("span"), { className: "setting-name", textContent: words }), input);
  if (schema.description) label.append(Object.assign(document.createElement("small"), { className: "help", textContent: schema.description }));
  return label;
}

// The choices of a string param: its enum, or the enums and constants of its anyOf branches (e.g. a colour map or "auto").
function enumValues(schema) {
  if (schema.enum) return schema.enum;
  const branches = schema.anyOf || [];
  const values = branches.flatMap((s) => s.enum || (s.const !== undefined ? [s.const] : []));
  return values.length && branches.every((s) => s.enum || s.const !== undefined || s.type === "null") ? values : null;
}

function simpleType(schema) {
  if (enumValues(schema)) return "enum";
  if (schema.type) return schema.type;
  const kinds = (schema.anyOf || []).map((s) => s.type).filter((t) => t && t !== "null");
  return kinds.length === 1 ? kinds[0] : kinds.includes("integer") && kinds.includes("string") ? "string" : null;
}

function paramInput(name, schema) {
  const kind = simpleType(schema);
  let input;
  if (kind === "enum") {
    input = document.createElement("select");
    const values = enumValues(schema);
    if (!values.includes(schema.default)) option(input, "", "default", true);  // e.g. fit: the model's own, decided by the API
    for (const value of values) option(input, value, value, value === schema.default);
  } else if (kind === "boolean") {
    input = Object.assign(document.createElement("input"), { type: "checkbox", checked: !!schema.default });
  } else if (kind === "integer" || kind === "number") {
    input = Object.assign(document.createElement("input"), { type: "number", step: kind === "integer" ? "1" : "any" });
    if (schema.default !== null && schema.default !== undefined) input.value = schema.default;
    if (schema.minimum !== undefined) input.min = schema.minimum;
    if (schema.maximum !== undefined) input.max = schema.maximum;
  } else if (kind === "string") {
    input = Object.assign(document.createElement("input"), { type: "text", placeholder: schema.default ?? "default" });
    if (typeof schema.default === "string") input.value = schema.default;
  } else {
    return null;  // lists and objects keep their defaults here (the API and client take them)
  }
  input.id = `param-${name}`;
  input.dataset.param = name;
  input.dataset.kind = kind;
  input.dataset.default = JSON.stringify(schema.default ?? null);
  return input;
}

function params() {
  const chosen = {};
  for (const input of $("params").querySelectorAll("[data-param]")) {
    const kind = input.dataset.kind;
    if (kind === "class") {
      const value = classValue(input);
      if (value !== null) chosen[input.dataset.param] = value;
      continue;
    }
    let value;
    if (kind === "boolean") value = input.checked;
    else if (input.value === "") continue;
    else if (kind === "integer") value = parseInt(input.value, 10);
    else if (kind === "number") value = parseFloat(input.value);
    else value = /^-?\d+$/.test(input.value) ? parseInt(input.value, 10) : input.value;
    if (JSON.stringify(value) === input.dataset.default) continue;  // only what the user changed: the API's defaults apply
    chosen[input.dataset.param] = value;
  }
  return chosen;
}

// ---- classes by name ---------------------------------------------------------------------------

// Params that name classes: target_class (one class) and class_visualization's objectives (one class term each).
const CLASS_PARAMS = { target_class: "one", objectives: "many" };

async function labelsOf(model) {
  if (!state.labels[model]) state.labels[model] = api(`/v1/models/${encodeURIComponent(model)}`).then((m) => m.labels || []);
  return state.labels[model];
}

// The labels containing ``text`` (case-insensitive), those starting with it first, at most ``limit``.
function matching(labels, text, limit = 8) {
  const query = text.trim().toLowerCase();
  if (!query) return [];
  const hits = [];
  labels.forEach((label, index) => {
    const at = label.toLowerCase().indexOf(query);
    if (at >= 0) hits.push({ label, index, at });
  });
  hits.sort((a, b) => (a.at !== 0) - (b.at !== 0) || a.index - b.index);
  return hits.slice(0, limit);
}

// A text field completing over the model's labels. "one": the chosen class's index is sent (free text is sent as
// typed, a label or an index, and the API checks it); "many": each chosen class becomes a class objective.
function classPicker(name, schema, count) {
  const box = document.createElement("div");
  box.className = "class-picker";
  box.dataset.param = name;
  box.dataset.kind = "class";
  box.dataset.count = count;
  const input = Object.assign(document.createElement("input"), { type: "text", id: `param-${name}`, autocomplete: "off" });
  input.placeholder = count === "many" ? "type to add classes (default: flamingo)" : "type a class name (default: the top class)";
  input.setAttribute("role", "combobox");
  const list = Object.assign(document.createElement("ul"), { className: "suggestions", id: `suggest-${name}` });
  list.setAttribute("role", "listbox");
  const chips = Object.assign(document.createElement("span"), { className: "chips", id: `chosen-${name}` });
  const pick = (hit) => {
    list.replaceChildren();
    if (count === "many") {
      if (![...chips.children].some((chip) => chip.dataset.index === String(hit.index))) {
        const chip = Object.assign(document.createElement("button"), { type: "button", className: "chip", textContent: `${hit.label} \u00d7` });
        chip.dataset.index = hit.index;
        chip.dataset.label = hit.label;
        chip.title = `class ${hit.index}; click to remove`;
        chip.addEventListener("click", () => chip.remove());
        chips.append(chip);
      }
      input.value = "";
    } else {
      input.value = hit.label;
      input.dataset.index = hit.index;
      input.dataset.label = hit.label;
    }
  };
  input.addEventListener("input", async () => {
    delete input.dataset.index;
    const labels = await labelsOf($("model").value);
    list.replaceChildren(...matching(labels, input.value).map((hit) => {
      const item = Object.assign(document.createElement("li"), { textContent: hit.label, title: `class ${hit.index}` });
      item.setAttribute("role", "option");
      item.dataset.index = hit.index;
      item.addEventListener("mousedown", (event) => { event.preventDefault(); pick(hit); });
      return item;
    }));
  });
  input.addEventListener("keydown", (event) => {
    const first = list.querySelector("li");
    if (event.key === "Enter" && first) {
      event.preventDefault();
      pick({ label: first.textContent, index: Number(first.dataset.index) });
    } else if (event.key === "Escape") list.replaceChildren();
  });
  input.addEventListener("blur", () => list.replaceChildren());
  box.append(input, list, chips);
  return box;
}

// What a class picker sends: null when left alone (the API's default applies).
function classValue(box) {
  const input = box.querySelector("input");
  if (box.dataset.count === "many") {
    const classes = [...box.querySelectorAll(".chip")].map((chip) => Number(chip.dataset.index));
    return classes.length ? classes.map((index) => ({ kind: "class", target_class: index })) : null;
  }
  const text = input.value.trim();
  if (!text) return null;
  if (input.dataset.index !== undefined && text === input.dataset.label) return Number(input.dataset.index);
  return /^\d+$/.test(text) ? parseInt(text, 10) : text;
}

// ---- results ----------------------------------------------------------------------------------

// Top classes as labelled horizontal bars: label, bar as long as the probability, the probability as a number.
function bars(top) {
  const box = document.createElement("div");
  box.className = "bars";
  for (const entry of top) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.index = entry.index;
    row.dataset.label = entry.label;
    row.dataset.probability = String(entry.probability);
    row.title = `class ${entry.index}: ${entry.label}, probability ${entry.probability}`;
    const label = Object.assign(document.createElement("span"), { className: "bar-label", textContent: entry.label });
    const track = Object.assign(document.createElement("span"), { className: "bar-track" });
    const fill = Object.assign(document.createElement("span"), { className: "bar-fill" });
    fill.style.width = `${(100 * entry.probability).toFixed(2)}%`;
    track.append(fill);
    const value = Object.assign(document.createElement("span"), { className: "bar-value", textContent: entry.probability.toFixed(3) });
    row.append(label, track, value);
    box.append(row);
  }
  return box;
}

// The judge's verdict on a synthesised picture of ``label``: does an independent network see it (its rank of the class)?
function verdict(label, judged) {
  const seen = judged.rank === 1 ? "recognised, its top class" : judged.rank <= 5 ? `in its top 5 (rank ${judged.rank})`
    : `not recognised (rank ${judged.rank})`;
  const text = `the judge (${judged.network}): ${seen}, probability ${judged.probability.toFixed(3)}` +
    (judged.top1 === label ? "" : `, its top class "${judged.top1}"`);
  const span = Object.assign(document.createElement("span"), { className: "verdict", textContent: text });
  Object.assign(span.dataset, { rank: judged.rank, network: judged.network, top1: judged.top1 });
  return span;
}

// A result's data: readable parts first (top classes as bars), the whole JSON folded below them.
function showData(data) {
  const readable = $("readable");
  readable.replaceChildren();
  if (data && Array.isArray(data.display_range) && data.colormap) readable.append(colorbar(data));
  $("data").textContent = data ? JSON.stringify(data, null, 2) : "";
  $("raw").hidden = !data;
  if (!data) return;
  if (data.target && data.target.label !== undefined) {  // an attribution: the class it explains
    const line = Object.assign(document.createElement("p"), { id: "explained", className: "explained" });
    line.textContent = `Explains "${data.target.label}" (class ${data.target.index}` +
      (data.target.probability !== undefined ? `, probability ${Number(data.target.probability).toFixed(3)}` : "") + `) on ${data.model}`;
    readable.append(line);
  }
  if (data.target_probabilities) {  // class visualisation: each target class, the network's and the judge's word on it
    const list = Object.assign(document.createElement("ul"), { id: "targets", className: "targets" });
    for (const [label, probability] of Object.entries(data.target_probabilities)) {
      const item = document.createElement("li");
      item.dataset.label = label;
      item.textContent = `"${label}": probability ${Number(probability).toFixed(3)} on ${data.model}`;
      if (data.judge && data.judge[label]) item.append("; ", verdict(label, data.judge[label]));
      list.append(item);
    }
    readable.append(Object.assign(document.createElement("h3"), { textContent: "Target classes" }), list);
  } else if (!data.target && Array.isArray(data.top) && data.top.length) {  // e.g. classify: what the network sees
    const best = data.top[0];
    readable.append(Object.assign(document.createElement("p"), { id: "headline", className: "explained",
      textContent: `${data.model} sees "${best.label}" (class ${best.index}), probability ${best.probability.toFixed(3)}` }));
  }
  if (Array.isArray(data.top) && data.top.length) {
    readable.append(Object.assign(document.createElement("h3"), { textContent: `Top classes on ${data.model}` }), bars(data.top));
  }
  $("raw").open = !readable.children.length;
}

// ---- one method -------------------------------------------------------------------------------

async function run(event) {
  event.preventDefault();
  showError(null);
  $("results").replaceChildren();
  showData(null);
  const method = currentMethod();
  $("run").disabled = true;
  $("status").textContent = `running ${method.name}...`;
  try {
    if (method.inline) await runInline(method);
    else await runJob(method);
  } catch (error) {
    showError(error);
    $("status").textContent = `${method.name} failed: ${error.message || error}`;  // never left saying "running..."
  } finally {
    $("run").disabled = false;
  }
}

async function runInline(method) {
  const form = new FormData();
  form.append("model", $("model").value);
  form.append("params", JSON.stringify(params()));
  for (const slot of method.inputs) {
    for (const file of $(`slot-${slot.name}`).files) form.append(slot.name, file);
  }
  $("status").textContent = `running ${method.name}...`;
  const started = performance.now();
  const result = await api(`/v1/${method.name}?embed=none`, { method: "POST", body: form });
  for (const artifact of result.artifacts.filter((a) => a.kind === "image")) {
    $("results").append(figure(artifact.url, artifact.name, `${method.name}-${artifact.name}.png`));
  }
  showData(result.data);
  $("status").textContent = `${method.name}: ${Math.round(performance.now() - started)} ms`;
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file);
  return (await api("/v1/images", { method: "POST", body: form })).id;
}

async function runJob(method) {
  const inputs = {};
  for (const slot of method.inputs) {
    const files = [...$(`slot-${slot.name}`).files];
    if (!files.length) continue;
    const ids = await Promise.all(files.map(upload));
    inputs[slot.name] = slot.many ? ids : ids[0];
  }
  const body = { method: method.name, model: $("model").value, inputs, params: params() };
  const job = await api("/v1/jobs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  await follow(job);
}

// "queued, position 1, about 40 s": a queued job's place and estimated wait (job.queue), else its state
function stateText(job) {
  const queue = job.state === "queued" && job.queue;
  if (!queue) return job.state;
  const wait = queue.estimated_wait_seconds;
  return `queued, position ${queue.position}` + (wait === null || wait === undefined ? "" : `, about ${Math.round(wait)} s`);
}

const FINISHED = ["succeeded", "failed", "cancelled", "aborted"];

function showJob(job) {
  $("job").hidden = false;
  $("cancel").hidden = FINISHED.includes(job.state);  // nothing to cancel once it is done
  $("job-id").textContent = job.id;
  $("job-state").textContent = stateText(job);
  const fraction = job.state === "succeeded" ? 1 : (job.progress && job.progress.fraction) || 0;
  $("progress").value = fraction;
  $("progress-text").textContent = `${Math.round(fraction * 100)}%` + (job.progress && job.progress.info && job.progress.info.loss !== undefined ? ` loss ${Number(job.progress.info.loss).toPrecision(4)}` : "");
  if (job.progress && job.progress.preview_url) $("preview").src = job.progress.preview_url;
}

function follow(job) {
  showJob(job);
  $("cancel").onclick = () => api(`/v1/jobs/${job.id}`, { method: "DELETE" }).catch(showError);
  return new Promise((resolve) => {
    const finish = (final) => {
      showJob(final);
      if (final.state === "succeeded") {
        for (const artifact of final.artifacts.filter((a) => a.kind === "image")) {
          $("results").append(figure(artifact.url, artifact.name, artifact.name));
        }
        showData(final.result);
      } else if (final.error) {
        showError(`${final.error.code}: ${final.error.message}`);
      }
      $("status").textContent = `${final.method || "job"}: ${final.state}` + (final.error ? ` (${final.error.code})` : "");
      resolve(final);
    };
    if (FINISHED.includes(job.state)) return finish(job);
    const events = new EventSource(job.links.events);
    events.addEventListener("progress", (message) => showJob(JSON.parse(message.data)));
    events.addEventListener("state", (message) => { events.close(); finish(JSON.parse(message.data)); });
    events.addEventListener("error", () => {
      if (events.readyState === EventSource.CLOSED) api(`/v1/jobs/${job.id}`).then(finish, showError);
    });
  });
}

// ---- comparison -------------------------------------------------------------------------------

// A grid cell: a fixed square holding a state line until its picture comes (never an empty <img>: no broken icons).
function gridCell(caption) {
  const cell = document.createElement("figure");
  cell.className = "cell pending";
  cell.dataset.state = "waiting";
  const frame = Object.assign(document.createElement("div"), { className: "frame" });
  frame.append(Object.assign(document.createElement("span"), { className: "cell-state", textContent: "waiting" }));
  cell.append(frame, Object.assign(document.createElement("figcaption"), { textContent: caption }));
  return cell;
}

// A cell's state: "waiting", "running" (with its seconds), "done" (with its picture) or "failed" (with the reason).
function setCell(cell, state, text, src) {
  cell.classList.toggle("pending", state === "waiting" || state === "running");
  for (const name of ["done", "failed"]) cell.classList.toggle(name, state === name);
  cell.dataset.state = state;
  const frame = cell.querySelector(".frame");
  if (src) {
    const img = Object.assign(document.createElement("img"), { src, alt: cell.dataset.method || "input" });
    img.dataset.artifact = cell.dataset.method || "input";
    frame.replaceChildren(img);
  } else if (text !== undefined) {
    frame.replaceChildren(Object.assign(document.createElement("span"), { className: "cell-state", textContent: text }));
  }
}

// Pictures a colour bar reads: the coloured map alone or over the picture (not guided backprop's RGB gradient, not a mask).
const COLOURED = ["heatmap", "overlay"];

// The grid's colour bars, one per colour map and sign in it: each map is scaled on its own (its normalisation), so a
// bar carries its numbers only when every map under it has the same range; else its ends are words and each map writes
// its own numbers under it.
function gridScale(cells) {
  const kinds = new Map();
  for (const cell of cells.filter((c) => c.scale)) {
    const key = `${cell.scale.colormap} ${cell.scale.sign === "all"}`;
    kinds.set(key, [...(kinds.get(key) || []), cell]);
  }
  return [...kinds.values()].map((same) => {
    const data = same[0].scale;
    const shared = same.every((c) => JSON.stringify(c.scale.display_range) === JSON.stringify(data.display_range));
    const words = shared ? null : data.sign === "all" ? ["-max", "0", "+max"] : ["low", "", "high"];
    const names = same.map((c) => c.dataset.method).join(", ");
    const how = shared ? "one range for all" : `each map scaled on its own (${data.normalization}${data.normalization === "percentile"
      ? ": its largest values clipped" : ""}), its own values at the ends written under it`;
    return colorbar(data, words, `${names}: ${data.sign === "all" ? SIGNED_MEANING : "unsigned, low to high"}; ${how}`);
  });
}

async function compare(event) {
  event.preventDefault();
  const file = $("compare-image").files[0];
  const chosen = [...document.querySelectorAll("input[name=compare]:checked")].map((input) => input.value);
  const grid = $("compare-grid");
  grid.replaceChildren();
  $("compare-scale").replaceChildren();
  if (!file || !chosen.length) return;
  const colormap = $("compare-colormap").value;
  const shared = {};  // only the settings changed from the API's defaults
  for (const [name, value] of Object.entries({ colormap, normalization: $("compare-normalization").value })) {
    if (value !== (state.compareDefaults || {})[name]) shared[name] = value;
  }
  $("compare-run").disabled = true;
  const input = gridCell("input, as the network sees it");  // the fitted picture the first map comes with
  input.id = "compare-input";
  grid.append(input);
  const cells = chosen.map((name) => {
    const cell = gridCell(name);
    cell.dataset.method = name;
    grid.append(cell);
    return cell;
  });
  for (const cell of cells) {  // one at a time: the inline pool is shared with everyone else
    const name = cell.dataset.method;
    const started = performance.now();
    setCell(cell, "running", "running...");
    const ticker = setInterval(() => setCell(cell, "running", `running... ${((performance.now() - started) / 1000).toFixed(1)} s`), 200);
    const form = new FormData();
    form.append("model", $("compare-model").value);
    form.append("params", JSON.stringify(shared));
    form.append("image", file);
    try {
      const result = await api(`/v1/${name}?embed=none`, { method: "POST", body: form });
      const main = result.artifacts.find((a) => a.name === result.main);
      const fitted = result.artifacts.find((a) => a.name === "input");
      if (fitted && input.dataset.state !== "done") setCell(input, "done", undefined, fitted.url);
      clearInterval(ticker);
      setCell(cell, "done", undefined, main.url);
      cell.querySelector("figcaption").textContent = `${name} ${result.main}, ${Math.round(result.data.timings.total_ms)} ms`;
      if (COLOURED.includes(result.main) && Array.isArray(result.data.display_range)) {
        cell.scale = result.data;
        const numbers = Object.assign(document.createElement("div"), { className: "scale" });
        Object.assign(numbers.dataset, { colormap: result.data.colormap, sign: result.data.sign, range: JSON.stringify(result.data.display_range) });
        numbers.append(scaleLabels(result.data));
        cell.append(numbers);
        $("compare-scale").replaceChildren(...gridScale(cells));
      }
    } catch (error) {
      clearInterval(ticker);
      setCell(cell, "failed", `failed: ${error.message}`);
    }
  }
  if (input.dataset.state !== "done") setCell(input, "failed", "no map came back with the fitted picture");
  $("compare-run").disabled = false;
}

// ---- wiring -----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll(".tab")) other.classList.toggle("active", other === tab);
      for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== tab.dataset.view;
    });
  }
  $("method").addEventListener("change", renderMethod);
  $("model").addEventListener("change", () => {
    for (const picker of document.querySelectorAll(".class-picker")) {  // another model, other labels
      picker.querySelector("input").value = "";
      picker.querySelector(".chips").replaceChildren();
    }
  });
  $("run-form").addEventListener("submit", run);
  $("compare-form").addEventListener("submit", compare);
  load().catch(showError);
});
