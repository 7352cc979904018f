"""EXPLAIN as a picture: the query's topology (its ``(step, detail)`` rows from
:mod:`nbstream.runtime.explain`) drawn as boxes joined by arrows — the inputs side by side on top,
then each step a record goes through, down to where the rows go. Plain HTML and CSS: it renders in
JupyterLab, Notebook 7 and a saved notebook alike, with no script."""

from __future__ import annotations

import html
from collections.abc import Sequence

_STYLE = """<style>
.nbstream-topology{font:12px/1.4 var(--jp-code-font-family,monospace);display:flex;flex-direction:column;
  align-items:center;gap:2px;margin:6px 0}
.nbstream-topology .row{display:flex;gap:12px;justify-content:center}
.nbstream-topology .box{border:1px solid var(--jp-border-color1,#999);border-radius:4px;padding:3px 8px;
  max-width:60em;background:var(--jp-layout-color1,#fff)}
.nbstream-topology .kind{font-weight:bold;margin-right:6px;text-transform:uppercase;font-size:10px;opacity:.7}
.nbstream-topology .arrow{opacity:.6}
</style>"""


def topology_html(steps: Sequence[tuple[str, str]]) -> str:
    """The picture of ``steps`` (the statement row, if any, is left to the table beside it); the
    output columns are one box."""
    steps = [s for s in steps if s[0] != "statement"]
    sources = [("source", html.escape(detail)) for kind, detail in steps if kind == "source"]
    columns = "<br>".join(html.escape(detail) for kind, detail in steps if kind == "column")
    layers = [sources] if sources else []
    for kind, detail in steps:
        if kind == "column" and columns:
            layers.append([("project", columns)])
            columns = ""  # one box for all of them
        elif kind not in ("source", "column"):
            layers.append([(kind, html.escape(detail))])
    rows = []
    for layer in layers:
        boxes = "".join(f'<div class="box"><span class="kind">{html.escape(kind)}</span>'
                        f'{detail}</div>' for kind, detail in layer)
        rows.append(f'<div class="row">{boxes}</div>')
    body = '<div class="arrow">&#8595;</div>'.join(rows)
    return f'{_STYLE}<div class="nbstream-topology">{body}</div>'
