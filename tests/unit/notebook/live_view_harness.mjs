// Runs nbstream's live view (static/live.js) in Node against a tiny stand-in DOM and widget model,
// feeds it the messages given as JSON on stdin, and prints what it shows and sends as JSON.
// Input: {"esm": path, "traits": {...}, "steps": [{"msg": {...}} | {"vega": true} | {"tick": true}]}

import { readFileSync } from "node:fs";

class Node {
  constructor(tag) {
    this.tag = tag; this.children = []; this.className = ""; this.style = {}; this._text = "";
    this.scrollTop = 0; this.clientHeight = 100; this.scrollHeight = 100; this.disabled = false;
  }
  appendChild(child) { this.children.push(child); return child; }
  append(...nodes) { for (const n of nodes) this.appendChild(n); }
  replaceChildren() { this.children = []; }
  addEventListener(type, handler) { this[`on${type}`] = handler; }
  set textContent(value) { this._text = value; this.children = []; }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join("|"); }
  createTHead() { return this.appendChild(new Node("thead")); }
  createTBody() { return this.appendChild(new Node("tbody")); }
  insertRow() { return this.appendChild(new Node("tr")); }
  insertCell() { return this.appendChild(new Node("td")); }
  setAttribute() {}
  find(className) {
    if (this.className === className) return this;
    for (const c of this.children) { const f = c.find(className); if (f) return f; }
    return null;
  }
}

globalThis.document = { createElement: (tag) => new Node(tag) };

// A Vega view stand-in: a dataset changed by changesets (remove by predicate, then insert); each run
// records whether a resize (a new layout of axes and titles) was asked for since the last run.
class Changeset {
  constructor() { this.removePredicate = () => false; this.inserted = []; }
  remove(predicate) { this.removePredicate = predicate; return this; }
  insert(rows) { this.inserted = rows; return this; }
}
const charts = [];
globalThis.nbstreamVega = {
  vegaEmbed: async (element, spec) => {
    const view = {
      data: [],
      runs: [],
      resizing: false,
      changeset: () => new Changeset(),
      change(name, changes) {
        if (name !== "nbstream") throw new Error(`unknown dataset ${name}`);
        view.data = view.data.filter((d) => !changes.removePredicate(d)).concat(changes.inserted);
        return view;
      },
      resize() { view.resizing = true; return view; },
      async runAsync() { view.runs.push({ resized: view.resizing }); view.resizing = false; return view; },
    };
    charts.push(view);
    return { view, finalize() {} };
  },
};

const input = JSON.parse(readFileSync(0, "utf8"));
const module = await import(input.esm);
const handlers = {};
const sent = [];
const model = {
  get: (name) => input.traits[name],
  on: (event, handler) => { handlers[event] = handler; },
  off: () => {},
  send: (message) => sent.push(message),
};
const el = new Node("div");
module.default.render({ model, el });
await new Promise((resolve) => setTimeout(resolve, 0));
for (const step of input.steps) {
  handlers["msg:custom"](step.msg, []);
  await new Promise((resolve) => setTimeout(resolve, 0));
}
const body = el.find("nbstream-rows").children[1];
const rows = body.children.map((tr) => tr.children.map((td) => td.textContent));
const chart = charts.length ? charts[0].data.map((d) => ({ ...d })) : null;
const chartRuns = charts.length ? charts[0].runs : null;
console.log(JSON.stringify({ rows, sent, chart, chartRuns, status: el.find("nbstream-status").textContent,
                             error: el.find("nbstream-error").textContent }));
