// The browser side of nbstream's live views (see nbstream/notebook/live.py for the protocol).
// Each view keeps the rows it shows in a Map (key -> row, in view order) and their sequence number.
// kernel -> view: {type: "snapshot", seq, rows: [[key, row]]}, {type: "delta", seq, remove, insert},
//                 {type: "vega"} with the Vega runtime as buffers[0]
// view -> kernel: {type: "snapshot_request", seq}, {type: "vega_request"}, {type: "stop"}

const VEGA_RETRY_MS = 15000;

function vegaRuntime(model) {
  // The Vega runtime is loaded once per page: the first view that needs it asks its kernel, every
  // view (of any widget) waits for the same promise. A view still waiting after VEGA_RETRY_MS asks
  // again itself (the first asker's output may have been cleared before the answer came).
  const page = globalThis;
  if (page.nbstreamVega) return Promise.resolve(page.nbstreamVega);
  if (!page.nbstreamVegaLoading) {
    let resolve, reject;
    const promise = new Promise((ok, fail) => { resolve = ok; reject = fail; });
    page.nbstreamVegaLoading = { promise, resolve, reject, evaluating: false };
    model.send({ type: "vega_request" });
  }
  const loading = page.nbstreamVegaLoading;
  const retry = setTimeout(() => { if (!page.nbstreamVega) model.send({ type: "vega_request" }); }, VEGA_RETRY_MS);
  loading.promise.finally(() => clearTimeout(retry)).catch(() => {});
  return loading.promise;
}

async function loadVegaRuntime(buffer) {
  const loading = globalThis.nbstreamVegaLoading;
  if (globalThis.nbstreamVega || !loading || loading.evaluating) return;
  loading.evaluating = true;
  const code = new TextDecoder().decode(buffer);
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  try {
    await import(url);
    loading.resolve(globalThis.nbstreamVega);
  } catch (error) {
    loading.reject(error);
  } finally {
    URL.revokeObjectURL(url);
  }
}

function element(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.appendChild(node);
  return node;
}

function shown(value) {
  if (value === null) return "";
  if (typeof value === "number" && !Number.isInteger(value)) return String(Number(value.toPrecision(12)));
  return String(value);
}

function compareKeys(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] === b[i]) continue;
    if (a[i] === null) return -1;
    if (b[i] === null) return 1;
    return a[i] < b[i] ? -1 : 1;
  }
  return a.length - b.length;
}

function render({ model, el }) {
  const root = element("div", "nbstream-table", el);
  const bar = element("div", "nbstream-bar", root);
  const status = element("span", "nbstream-status", bar);
  const stop = element("button", "nbstream-stop", bar);
  stop.textContent = "Stop";
  stop.addEventListener("click", () => model.send({ type: "stop" }));
  const problem = element("div", "nbstream-error", root);
  const chartBox = element("div", "nbstream-chart", root);
  const table = element("table", "nbstream-rows", root);
  const head = table.createTHead();
  const body = table.createTBody();

  const rows = new Map();
  let seq = -1;
  let chart = null; // {view, finalize} once embedded
  let disposed = false;

  function drawStatus() {
    status.textContent = model.get("status");
    stop.disabled = model.get("state") !== "RUNNING";
  }

  function drawRows() {
    const following = table.scrollTop + table.clientHeight >= table.scrollHeight - 4; // stay at the newest rows
    head.replaceChildren();
    const header = head.insertRow();
    for (const name of model.get("columns")) element("th", "", header).textContent = name;
    body.replaceChildren();
    for (const row of displayOrder()) {
      const tr = body.insertRow();
      for (const value of row) tr.insertCell().textContent = shown(value);
    }
    if (following) table.scrollTop = table.scrollHeight;
  }

  function displayOrder() {
    // A table's rows stay in key order (an update does not move a row); a stream's in arrival order.
    if (!model.get("keyed")) return rows.values();
    const entries = [...rows.entries()].map(([key, row]) => [JSON.parse(key), row]);
    entries.sort((a, b) => compareKeys(a[0], b[0]));
    return entries.map(([, row]) => row);
  }

  function records(entries) {
    const columns = model.get("columns");
    return entries.map(([key, row]) => {
      const record = { __key: key };
      columns.forEach((name, i) => { record[name] = row[i]; });
      return record;
    });
  }

  function chartChange(remove, insert) {
    if (!chart) return;
    const gone = new Set(remove);
    const changes = chart.view.changeset()
      .remove(remove === null ? () => true : (datum) => gone.has(datum.__key))
      .insert(records(insert));
    // resize(): with autosize "pad" (Vega-Lite's default) the view is sized to its axes and titles
    // only when laid out; without it the SVG keeps the size it had with no rows and clips the labels
    // and titles the rows bring.
    chart.view.change("nbstream", changes).resize().runAsync().catch(showProblem);
  }

  function showProblem(error) {
    problem.textContent = String(error && error.message ? error.message : error);
  }

  function onSnapshot(message) {
    if (message.seq <= seq) return;
    rows.clear();
    for (const [key, row] of message.rows) rows.set(key, row);
    seq = message.seq;
    drawRows();
    chartChange(null, [...rows.entries()]);
  }

  function onDelta(message) {
    if (seq < 0 || message.seq <= seq) return; // waiting for a snapshot, or already applied
    if (message.seq !== seq + 1) { // a gap: start over from a snapshot
      model.send({ type: "snapshot_request", seq });
      return;
    }
    for (const key of message.remove) rows.delete(key);
    for (const [key, row] of message.insert) rows.set(key, row);
    seq = message.seq;
    drawRows();
    chartChange(message.remove, message.insert);
  }

  function onMessage(message, buffers) {
    if (message.type === "snapshot") onSnapshot(message);
    else if (message.type === "delta") onDelta(message);
    else if (message.type === "vega" && buffers && buffers.length) loadVegaRuntime(buffers[0]);
    else if (message.type === "vega_error" && globalThis.nbstreamVegaLoading) {
      globalThis.nbstreamVegaLoading.reject(new Error(message.message));
    }
  }

  async function embedChart() {
    const spec = model.get("spec");
    if (!spec || Object.keys(spec).length === 0) { chartBox.style.display = "none"; return; }
    chartBox.textContent = "loading chart…";
    try {
      const runtime = await vegaRuntime(model);
      if (disposed) return;
      chartBox.textContent = "";
      const result = await runtime.vegaEmbed(chartBox, spec, { actions: false, renderer: "svg" });
      if (disposed) { result.finalize(); return; }
      chart = { view: result.view, finalize: result.finalize };
      chartChange(null, [...rows.entries()]);
    } catch (error) {
      chartBox.textContent = "";
      showProblem(error);
    }
  }

  table.style.display = model.get("show_table") ? "" : "none";
  model.on("msg:custom", onMessage);
  model.on("change:status", drawStatus);
  model.on("change:state", drawStatus);
  model.on("change:columns", drawRows);
  drawStatus();
  drawRows();
  embedChart();
  model.send({ type: "snapshot_request", seq });

  return () => {
    disposed = true;
    model.off("msg:custom", onMessage);
    model.off("change:status", drawStatus);
    model.off("change:state", drawStatus);
    model.off("change:columns", drawRows);
    if (chart) chart.finalize();
  };
}

export default { render };
