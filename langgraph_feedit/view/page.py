"""The shell every trace page shares: its style, the index's sorting script, its security policy.

The pages load nothing: their Content-Security-Policy allows no request at all
(``default-src 'none'``), inline style, and only the page's own script by its hash, so even a
text that slipped past escaping could neither run a script nor call home. :func:`page` wraps a
body (already escaped by :mod:`langgraph_feedit.view.render`, which writes every piece of
caller text) in that shell; a server sends the same policy as a header
(:data:`INDEX_POLICY`, :data:`TRACE_POLICY`).
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

__all__ = ["INDEX_POLICY", "INDEX_SCRIPT", "TRACE_POLICY", "page", "page_policy"]

_CSS = """
:root{--draft:#2f6fb0;--critique:#b06a2f;--edit:#2f9a5a;--judge:#7a4fb0;--path:#d4a017;
--bg:#fff;--fg:#1d2330;--mute:#667;--line:#d6dae3}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:16px 24px;
color:var(--fg);background:var(--bg)}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px;
border-bottom:1px solid var(--line);padding-bottom:3px}
.meta{color:var(--mute)}.meta b{color:var(--fg);font-weight:600}
pre,.text{white-space:pre-wrap;word-break:break-word;font:13px/1.45 ui-monospace,
"DejaVu Sans Mono",monospace;margin:4px 0;background:#f6f7f9;padding:6px 8px;border-radius:4px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
.msg{margin:6px 0}.msg .who{font-weight:600;text-transform:capitalize}
ul.tree,ul.tree ul{list-style:none;margin:0;padding-left:22px}
ul.tree{padding-left:0}
ul.tree li{position:relative;margin:3px 0}
ul.tree ul>li::before{content:"";position:absolute;left:-14px;top:0;bottom:0;
border-left:1px solid var(--line)}
ul.tree ul>li::after{content:"";position:absolute;left:-14px;top:13px;width:11px;
border-top:1px solid var(--line)}
ul.tree ul>li:last-child::before{bottom:auto;height:13px}
details.box{border:1px solid var(--line);border-left:4px solid var(--mute);border-radius:4px;
padding:1px 6px;background:#fff}
.kind-draft>details{border-left-color:var(--draft)}
.kind-critique>details{border-left-color:var(--critique)}
.kind-edit>details{border-left-color:var(--edit)}
li.on-path>details{background:#fff8e1;border-color:var(--path);border-left-width:6px}
li.selected>details{box-shadow:0 0 0 2px var(--path)}
summary{cursor:pointer;padding:2px 0}
summary .id{font-family:ui-monospace,monospace;font-weight:600}
.tag{display:inline-block;padding:0 5px;margin-left:4px;border-radius:3px;font-size:12px;
background:#eef0f4;color:#334}
.tag.kind{color:#fff}.k-draft{background:var(--draft)!important}
.k-critique{background:var(--critique)!important}.k-edit{background:var(--edit)!important}
.tag.err{background:#fbe3e3;color:#a11}.tag.reused{background:#e3f0fb;color:#135}
.tag.sel{background:var(--path);color:#000;font-weight:600}
.pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.4fr);gap:10px}
.pair h4,.body h4{margin:6px 0 0;font-size:12px;color:var(--mute);font-weight:600}
ins{background:#d5f5dd;text-decoration:none}del{background:#fbdada;color:#822}
del+ins{margin-left:.3em}
.timeline{position:relative;border:1px solid var(--line);padding:4px 0;max-height:480px;
overflow-y:auto}
.tl-row{position:relative;height:7px;margin:1px 0}
.bar{position:absolute;top:0;height:7px;border-radius:2px;min-width:2px}
.bar.role-draft{background:var(--draft)}.bar.role-critique{background:var(--critique)}
.bar.role-edit{background:var(--edit)}.bar.role-judge{background:var(--judge)}.bar.reused{opacity:.35}
.bar.failed{background:#c33}.bar.on-path{outline:1px solid #000}
.axis{display:flex;justify-content:space-between;color:var(--mute);font-size:12px}
.legend span{margin-right:12px}.legend i{display:inline-block;width:10px;height:10px;
margin-right:4px;vertical-align:middle}
th.sort{cursor:pointer;user-select:none}th.sort::after{content:" \\2195";color:var(--mute)}
tr.failed td{color:#a11}
"""

INDEX_SCRIPT = """
document.querySelectorAll("th.sort").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var asc = th.getAttribute("data-dir") !== "asc";
    table.querySelectorAll("th.sort").forEach(function (o) { o.removeAttribute("data-dir"); });
    th.setAttribute("data-dir", asc ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var nx = Number(x), ny = Number(y);
      var c = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _csp(script: str | None) -> str:
    policy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
    if script is not None:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        policy += f"; script-src 'sha256-{digest}'"
    return policy


def page(title: str, body: str, script: str | None = None) -> str:
    js = f"<script>{script}</script>" if script is not None else ""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(script)}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}{js}</body></html>\n"
    )


def page_policy(script: str | None = None) -> str:
    """The Content-Security-Policy of a page (for a server to send as a header too)."""
    return _csp(script)


INDEX_POLICY = _csp(INDEX_SCRIPT)
TRACE_POLICY = _csp(None)
