"""A one-page HTML report of a run: timings, metrics per slice, anomalies, bad input files, artifacts.

Written to `<run dir>/report.html` after every run, including runs stopped by a gate.
"""

import datetime
import html
from typing import Dict, List, Optional, Sequence, Tuple

from lamina import storage

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.bar{background:#4a7bd0;height:.8em;display:inline-block}
.ok{color:#17803d}.bad{color:#b42318}code{background:#f3f3f3;padding:0 .3em}
"""


def slice_metrics(evaluation_dir: str) -> List[Tuple[str, Dict[str, float]]]:
    """(slice name, metrics) for every slice TFMA computed, overall first."""
    import tensorflow_model_analysis as tfma

    rows = []
    for slice_key, metrics in tfma.load_eval_result(evaluation_dir).slicing_metrics:
        name = ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in slice_key) or "all examples"
        values = {k: float(v["doubleValue"]) for k, v in metrics.get("", {}).get("", {}).items()
                  if "doubleValue" in v and not k.endswith("_diff")}
        rows.append((name, values))
    return sorted(rows, key=lambda r: (r[0] != "all examples", r[0]))


def write_report(path: str, title: str, components: Sequence, outcome: str, ok: bool,
                 evaluation_dir: Optional[str] = None, anomalies: Sequence = (),
                 failed_thresholds: Sequence[str] = (), artifacts: Optional[Dict[str, str]] = None,
                 bad_files: Sequence = (), ingest: Optional[dict] = None, rows: Optional[dict] = None,
                 columns: Sequence[Tuple[str, str, str]] = ()) -> str:
    """Writes the page; `rows` is a table ingestion's report, `columns` (name, use, wire type) its columns."""
    e = html.escape
    longest = max([c.seconds for c in components] + [1e-9])
    parts = [f"<!doctype html><meta charset=utf-8><title>{e(title)}</title><style>{_STYLE}</style>",
             f"<h1>{e(title)}</h1><p>{datetime.datetime.now():%Y-%m-%d %H:%M:%S} &middot; "
             f"<b class={'ok' if ok else 'bad'}>{e(outcome)}</b></p>"]
    if failed_thresholds:
        parts.append("<h2>Failed thresholds</h2><ul>" + "".join(f"<li>{e(f)}</li>" for f in failed_thresholds)
                     + "</ul>")
    if anomalies:
        parts.append("<h2>Anomalies</h2><table><tr><th>split<th>feature<th>anomaly<th>description</tr>")
        parts += [f"<tr><td>{e(a.split)}<td>{e(a.feature)}<td>{e(a.anomaly)}<td>{e(a.description)}</tr>"
                  for a in anomalies]
        parts.append("</table>")
    if rows:
        left_out = rows["rows"] - rows["examples"]
        parts.append(f"<h2>Rows and columns</h2><p>{rows['examples']} examples from {rows['rows']} rows "
                     f"({rows.get('format', 'csv')}"
                     + (f", delimiter <code>{e(rows['delimiter'])}</code>" if rows.get("delimiter") else "")
                     + f", {e(rows['encoding'])}); {left_out} left out: {rows['bad_rows']} unreadable, "
                     f"{rows['missing_label']} without a label.</p>")
        if columns:
            parts.append("<table><tr><th>column<th>used as<th>on the wire</tr>")
            parts += [f"<tr><td><code>{e(n)}</code><td>{e(use)}<td>{e(wire)}</tr>" for n, use, wire in columns]
            parts.append("</table>")
    if ingest:
        classes = ", ".join(f"{e(str(k))}: {v}" for k, v in ingest.get("classes", {}).items())
        parts.append(f"<h2>Images</h2><p>{ingest['examples']} examples from {ingest['files']} files; "
                     f"{ingest['bad']} bad. Per class: {classes}</p>")
    if bad_files:
        parts.append(f"<h2>Bad input files ({len(bad_files)})</h2><table><tr><th>file<th>problem<th>detail</tr>")
        parts += [f"<tr><td><code>{e(b.path)}</code><td>{e(b.problem)}<td>{e(b.detail)}</tr>" for b in bad_files]
        parts.append("</table>")
    parts.append("<h2>Components</h2><table><tr><th>component<th>seconds<th><th></tr>")
    for c in components:
        width = int(300 * c.seconds / longest)
        parts.append(f"<tr><td>{e(c.name)}<td class=num>{c.seconds:.1f}<td><span class=bar style='width:{width}px'>"
                     f"</span><td>{'cached' if c.cached else ''}</tr>")
    parts.append("</table>")
    if evaluation_dir and storage.isdir(evaluation_dir):
        rows = slice_metrics(evaluation_dir)
        names = sorted({k for _, m in rows for k in m})
        parts.append("<h2>Metrics on the eval split</h2><table><tr><th>slice" +
                     "".join(f"<th>{e(n)}" for n in names) + "</tr>")
        for slice_name, values in rows:
            cells = "".join(f"<td class=num>{values[n]:.4f}" if n in values else "<td>" for n in names)
            parts.append(f"<tr><td>{e(slice_name)}{cells}</tr>")
        parts.append("</table>")
    if artifacts:
        parts.append("<h2>Artifacts</h2><table>" + "".join(
            f"<tr><td>{e(k)}<td><code>{e(v)}</code></tr>" for k, v in artifacts.items() if v) + "</table>")
    return storage.write_text(path, "\n".join(parts))
