"""The self-contained ``report.html``: plots inline as base64 PNGs, tables as HTML, inline CSS.

It opens from disk in any browser, with no server and nothing fetched. Numbers arrive as
fractions and are shown as percent (scores) and percentage points (ER, residuals).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.findings import METRIC_NAMES

_CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.figs { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
figure { margin: 0; } figure img { width: 420px; max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; max-width: 420px; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px;
          vertical-align: -0.1em; margin-right: 0.35em; }
.muted { color: #666; } code { background: #f4f4f4; padding: 0 3px; }
.err { font-family: monospace; font-size: 12px; text-align: left; }
"""


@dataclass
class ReportPage:
    """Everything ``render`` shows. Scores and ER are fractions."""

    paths: Sequence[str]
    transform: str
    baseline: str
    group_by: str
    trials: pd.DataFrame  # one row per trial (``load_trials``), with a ``group`` column
    n_points: int
    summary: pd.DataFrame  # ``summarize_groups``
    colors: Mapping[str, object]
    figures: Sequence[tuple[str, Path, str]] = ()  # (title, PNG path, caption)
    residual_trend: str | None = None
    n_boot: int = 1000
    seed: int = 0
    files: Sequence[str] = ()
    notes: Sequence[str] = field(default_factory=list)
    findings: Sequence[str] = ()  # one sentence per group (``analysis.findings``)
    metric: str = "f1"
    ood_set: str = "ood"
    selection: pd.DataFrame | None = None  # ``analysis.selection.model_selection``
    compared: Sequence[str] = ()  # the paper's findings checked against this run (``analysis.claims``)


def render(page: ReportPage) -> str:
    """The report as one HTML string (UTF-8, no external resources)."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>Robustness report</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>Effective-robustness report</h1>",
    ]
    if page.findings:
        parts.append("<h2>Findings</h2><ul>" + "".join(f"<li>{_e(f)}</li>" for f in page.findings) + "</ul>")
    if page.compared:
        parts.append("<h2>Compared with the paper</h2><p>Each of the paper's headline findings, and whether this "
                     "run shows the same sign (a difference of means, or overlapping 95% CIs where the paper found "
                     "none).</p><ul>" + "".join(f"<li>{_e(c)}</li>" for c in page.compared) + "</ul>")
    parts.append(_overview(page))
    if page.figures:
        parts.append("<h2>Figures</h2><div class='figs'>")
        for title, png, caption in page.figures:
            data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
            parts.append(
                f"<figure><img alt='{_e(title)}' src='data:image/png;base64,{data}'>"
                f"<figcaption><b>{_e(title)}.</b> {_e(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts += ["<h2>Trends per group</h2>", _trend_table(page), _selection(page), _excluded(page)]
    if page.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_code(_e(n))}</li>" for n in page.notes))
        parts.append("</ul>")
    if page.files:
        items = "".join(f"<li><a href='{_e(f)}'>{_e(f)}</a></li>" for f in page.files)
        parts.append(f"<h2>Files</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _overview(page: ReportPage) -> str:
    counts = page.trials["status"].value_counts() if len(page.trials) else pd.Series(dtype=int)
    status = ", ".join(
        f"{int(counts[s])} {s}" for s in ("finished", "errored", "running", "pending") if s in counts
    )
    n_exp = page.trials["experiment"].nunique() if "experiment" in page.trials else 0
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        ("sweep paths", "<br>".join(f"<code>{_e(p)}</code>" for p in page.paths)),
        ("experiments", str(n_exp)),
        ("trials", f"{len(page.trials)} ({status or 'none'})"),
        ("points (trial x fine-tuning epoch)", str(page.n_points)),
        ("axes / fit transform", _e(page.transform)),
        ("groups by", f"<code>{_e(page.group_by)}</code>"),
        ("ER baseline trend", _e(page.baseline)),
        ("scores", f"{_e(METRIC_NAMES.get(page.metric, page.metric))}; OOD set <code>{_e(page.ood_set)}</code>"),
        ("residual check", _e(page.residual_trend or "skipped (see notes)")),
        ("bootstrap", f"{page.n_boot} resamples, seed {page.seed}, 95% percentile intervals"),
        ("generated", when),
    ]
    body = "".join(f"<tr><th class='l'>{k}</th><td class='l'>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _trend_table(page: ReportPage) -> str:
    s = page.summary
    if s.empty:
        return "<p class='muted'>No finished points to fit yet.</p>"
    name = "F1" if page.metric == "f1" else "acc."
    subset = [c for c in ("subset_images", "subset_classes") if c in s.columns]
    head = [
        "group", "trend", "points", "trials", *[c.replace("_", " ") for c in subset], "slope",
        "intercept", "r²", f"mean ID {name} (%)", f"mean OOD {name} (%)", f"mean ER vs {page.baseline} (pp)",
        "95% CI (pp)",
    ]
    out = ["<table><tr>" + "".join(f"<th class='l'>{_e(h)}</th>" for h in head) + "</tr>"]
    for _, r in s.iterrows():
        g = str(r["group"])
        color = page.colors.get(g)
        swatch = f"<span class='swatch' style='background:{_css_color(color)}'></span>" if color else ""
        few = " <span class='muted'>(few trials)</span>" if bool(r.get("few_trials")) is True else ""
        cells = [
            f"<td class='l'>{swatch}{_e(g)}{few}</td>", f"<td class='l'>{_e(r.get('trend_origin', 'fit'))}</td>",
            _td(r["n"], "{:.0f}"), _td(r.get("n_trials"), "{:.0f}"),
            *[_td(r[c], "{:,.0f}") for c in subset],
            _td(r["slope"], "{:.3f}"), _td(r["intercept"], "{:.3f}"),
            _td(r["r2"] if r["n"] > 2 else None, "{:.3f}"),  # a line through 2 points has r² = 1 by construction
            _td(100 * r["mean_id"], "{:.1f}"), _td(100 * r["mean_ood"], "{:.1f}"),
            _td(100 * r["mean_er"], "{:+.2f}"),
            f"<td>{_ci(r['er_ci_lo'], r['er_ci_hi'])}</td>",
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    out.append(
        "<p class='muted'>Slope and intercept are in the fit's transformed space "
        f"({_e(page.transform)} for fitted groups; a given baseline's own transform). ER = OOD "
        "minus the baseline trend's prediction; its CI resamples each group's trials (a trial's epochs stay "
        "together). Subset sizes are the pre-training subset's (– for scratch or given weights). r² is – for a fit "
        "through 2 points (1 by construction). '(few trials)': fewer than 3 trials, too few for a trustworthy fit "
        "or interval.</p>"
    )
    return "\n".join(out)


def _selection(page: ReportPage) -> str:
    sel = page.selection
    if sel is None or sel.empty:
        return ""
    x, y = f"id_{page.metric}", f"{page.ood_set}_{page.metric}"
    head = ["group", "cell", "arch", "seed", "selected epoch", "OOD val F1 (%)", f"ID {page.metric} (%)",
            f"OOD {page.metric} (%)", "last epoch", f"last ID {page.metric} (%)", f"last OOD {page.metric} (%)"]
    out = ["<h2>WILDS model selection</h2>",
           "<p>Per cell, the fine-tuning epoch with the best OOD validation macro-F1 (how WILDS selects iWildCam "
           "models), its test scores, and the last epoch's. The trends above use every epoch.</p>",
           "<table><tr>" + "".join(f"<th class='l'>{_e(h)}</th>" for h in head) + "</tr>"]
    for _, r in sel.iterrows():
        cells = [f"<td class='l'>{_e(_plain(r.get(c)))}</td>" for c in ("group", "cell_id", "arch", "seed")]
        cells += [_td(r["selected_epoch"], "{:.0f}"), _td(100 * r["ood_val_f1"], "{:.1f}"),
                  _td(100 * r[f"selected_{x}"], "{:.1f}"), _td(100 * r[f"selected_{y}"], "{:.1f}"),
                  _td(r["last_epoch"], "{:.0f}"), _td(100 * r[f"last_{x}"], "{:.1f}"),
                  _td(100 * r[f"last_{y}"], "{:.1f}")]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _excluded(page: ReportPage) -> str:
    t = page.trials
    bad = t[t["status"] != "finished"] if len(t) else t
    if not len(bad):
        return "<h2>Excluded trials</h2><p>None: every trial finished and entered the fits.</p>"
    cols = ["trial_id", "status", "group"]
    cols += [c for c in ("cell_id", "arch", "seed") if c in bad.columns]
    head = [*cols, "epochs done", "error"]
    out = [
        f"<h2>Excluded trials ({len(bad)})</h2>",
        ("<p>Errored, running and pending trials are left out of the fits, bands and ER; their "
         "epochs still appear in <code>points.csv</code> with their status.</p>"),
        "<table><tr>" + "".join(f"<th class='l'>{_e(h)}</th>" for h in head) + "</tr>",
    ]
    order = {"errored": 0, "running": 1, "pending": 2}
    bad = bad.assign(_o=bad["status"].map(order).fillna(3)).sort_values(["_o", "trial_id"])
    for _, r in bad.iterrows():
        err = r.get("error")
        err = err if isinstance(err, str) else ""
        cells = [f"<td class='l'>{_e(_plain(r.get(c)))}</td>" for c in cols]
        cells.append(_td(r.get("epochs_done"), "{:.0f}"))
        cells.append(f"<td class='err'>{_e(err)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _td(value: object, fmt: str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "<td>–</td>"
    return "<td>–</td>" if math.isnan(v) else f"<td>{fmt.format(v)}</td>"


def _ci(lo: object, hi: object) -> str:
    try:
        lo_f, hi_f = 100 * float(lo), 100 * float(hi)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(lo_f) or math.isnan(hi_f):
        return "–"
    return f"[{lo_f:+.2f}, {hi_f:+.2f}]"


def _plain(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _css_color(color: object) -> str:
    from matplotlib.colors import to_hex

    return to_hex(color)


def _code(escaped: str) -> str:
    """`name` in a note (already HTML-escaped) shown as code, not as backticks."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
