"""Show a Report: a rich table, JSON, Markdown or HTML (with a forest plot of relative lifts).

Rendering computes no statistic: every number comes from the Report. Files written with ``out``
go to a temporary name in the same folder and are renamed into place (``atomic``).
"""
from __future__ import annotations

import base64
import html
import io
import json
import sys
from pathlib import Path

import atomic
from abtest.report import MetricResult, Report

FORMATS = ("table", "json", "markdown", "html")


def as_dict(report: Report) -> dict:
    """The JSON object of DESIGN.md: alpha, control, variants, srm, metrics, then extras."""
    srm = report.srm._asdict()
    return {
        "alpha": report.alpha,
        "control": report.control,
        "variants": dict(report.variants),
        "srm": {"p_value": srm.pop("p_value"), **srm},
        "metrics": [_metric_dict(m) for m in report.metrics],
        "correction": report.correction,
        "correction_scope": report.scope,
        "p_value_test": "always-valid mSPRT on the absolute effect" if report.sequential
        else "Welch t test of the absolute effect",
        "rel_ci_method": "delta method on log(treatment/control), exp(.) - 1",
        "warnings": list(report.warnings),
        "source": report.source,
    }


def _metric_dict(m: MetricResult) -> dict:
    d = {k: getattr(m, k) for k in m.__dataclass_fields__}
    for key in ("abs_ci", "rel_ci", "theta", "theta_treatment", "flags"):
        if d[key] is not None:
            d[key] = list(d[key])
    return d


def to_json(report: Report) -> str:
    return json.dumps(as_dict(report), indent=2, allow_nan=False)


def _f(x, digits: int = 4) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}g}"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:+.2f}%"


def _ci(ci, pct: bool = False) -> str:
    if ci is None:
        return "–"
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if pct else f"[{_f(ci[0])}, {_f(ci[1])}]"


def _p(p) -> str:
    return "–" if p is None else (f"{p:.2e}" if p < 1e-4 else f"{p:.4f}")


def srm_line(report: Report) -> str:
    s = report.srm
    observed = ", ".join(f"{k} {v:,}" for k, v in s.observed.items())
    verdict = "MISMATCH: do not trust the lifts" if s.mismatch else "OK"
    return f"SRM {verdict} — p = {_p(s.p_value)} ({s.method}; alpha {s.alpha:g}); units: {observed}"


def _rows(report: Report):
    for m in report.metrics:
        yield m, [
            m.name, m.variant, m.kind + (" (CUPED)" if m.cuped else ""), _f(m.control_mean), _f(m.treatment_mean),
            _f(m.abs_effect), _ci(m.abs_ci), _pct(m.rel_effect), _ci(m.rel_ci, pct=True), _p(m.p_value),
            _p(m.p_value_adjusted), "; ".join(m.flags)]


HEADERS = ["metric", "variant", "kind", "control", "treatment", "abs effect", "abs CI", "rel effect", "rel CI",
           "p", "p adj", "flags"]


def _title(report: Report) -> str:
    return (f"alpha {report.alpha:g}, {report.correction} correction ({report.scope})"
            + (", sequential (always-valid)" if report.sequential else ""))


def _effect(effect: str, ci: str) -> str:
    return effect if ci == "–" else f"{effect}\n{ci}"


def _notes(report: Report) -> tuple[list[str], list[str]]:
    """A footnote mark per metric row ("" where it has no flags) and the footnotes' texts, in order."""
    marks, notes = [], []
    for m in report.metrics:
        if m.flags:
            notes.append(f"{m.name} ({m.variant}): " + "; ".join(m.flags))
        marks.append(f"[{len(notes)}]" if m.flags else "")
    return marks, notes


def _wide_table(report: Report, marks: list[str]):
    """One row per metric and variant; each CI stacked under its effect; no cell is ever cut."""
    from rich import box
    from rich.table import Table

    table = Table(title=_title(report), title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
    for h in ("metric", "variant", "control", "treatment", "abs effect\n[CI]", "rel effect\n[CI]", "p", "p adj"):
        table.add_column(h, justify="left" if h in ("metric", "variant") else "right", no_wrap=True)
    for m, mark in zip(report.metrics, marks):
        label = " ".join(x for x in ("(CUPED)" if m.cuped else "", mark) if x)
        significant = m.p_value_adjusted is not None and m.p_value_adjusted < report.alpha
        table.add_row(m.name + (f"\n  {label}" if label else ""), m.variant, _f(m.control_mean), _f(m.treatment_mean),
                      _effect(_f(m.abs_effect), _ci(m.abs_ci)), _effect(_pct(m.rel_effect), _ci(m.rel_ci, pct=True)),
                      _p(m.p_value), _p(m.p_value_adjusted), style="bold" if significant else None, end_section=True)
    return table


def _blocks(report: Report, marks: list[str], console) -> None:
    """One block per metric and variant, for consoles too narrow for the table."""
    from rich.table import Table

    console.print(_title(report), highlight=False)
    for m, mark in zip(report.metrics, marks):
        significant = m.p_value_adjusted is not None and m.p_value_adjusted < report.alpha
        head = " ".join(x for x in (m.name, "(CUPED)" if m.cuped else "", mark, f"— {m.variant} vs {report.control}") if x)
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        grid.add_row("means", f"{report.control} {_f(m.control_mean)} · {m.variant} {_f(m.treatment_mean)}")
        grid.add_row("abs effect", f"{_f(m.abs_effect)}  {_ci(m.abs_ci)}")
        grid.add_row("rel effect", f"{_pct(m.rel_effect)}  {_ci(m.rel_ci, pct=True)}")
        grid.add_row("p", f"{_p(m.p_value)}  (adjusted {_p(m.p_value_adjusted)})")
        console.print()
        console.print(head, style="bold" if significant else None, highlight=False)
        console.print(grid, highlight=False)


def print_table(report: Report, console) -> None:
    """The SRM verdict first, then one row per metric and variant: a table where it fits the console
    whole, else one block per metric (full names and whole numbers at any width); then the flags."""
    from rich.measure import Measurement

    style = "bold red" if report.srm.mismatch else "bold green"
    console.print(srm_line(report), style=style, highlight=False)
    marks, notes = _notes(report)
    table = _wide_table(report, marks)
    natural = Measurement.get(console, console.options.update(width=10_000), table).maximum  # unclamped
    if natural <= console.width:
        console.print(table, highlight=False)
    else:
        _blocks(report, marks, console)
        console.print()
    for mark, note in zip((m for m in marks if m), notes):
        console.print(f"{mark} {note}", highlight=False)


def forest_plot_png(report: Report) -> bytes:
    """Relative lifts with their intervals, one row per metric and variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in report.metrics if m.rel_effect is not None]
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(rows), 1) + 1.2))
    for i, m in enumerate(rows):
        y = len(rows) - 1 - i
        if m.rel_ci is not None:
            ax.plot([100 * m.rel_ci[0], 100 * m.rel_ci[1]], [y, y], color="tab:blue", lw=2)
        ax.plot([100 * m.rel_effect], [y], "o", color="tab:blue")
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{m.name} ({m.variant})" for m in reversed(rows)])
    ax.set_xlabel(f"relative lift vs {report.control} (%), {100 * (1 - report.alpha):g}% CI")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _variance_rows(report: Report):
    for m in report.metrics:
        if m.cuped:
            theta = ", ".join(f"{t:.4g}" for t in m.theta or ())
            yield [m.name, m.variant, m.adjustment, theta,
                   "–" if m.variance_reduction is None else f"{100 * m.variance_reduction:.1f}%"]


def to_markdown(report: Report, image: str) -> str:
    lines = ["# Experiment report", "", f"**{srm_line(report)}**", ""]
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for _, row in _rows(report)]
    lines += ["", f"alpha {report.alpha:g}; p adj: {report.correction} ({report.scope}); "
              "p tests the absolute effect; relative CIs are on the log scale.", ""]
    variance = list(_variance_rows(report))
    if variance:
        lines += ["## Variance reduction by CUPED", "", "| metric | variant | adjustment | θ | variance reduction |",
                  "|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in variance] + [""]
    lines += ["## Relative lifts", "", f"![forest plot of relative lifts]({image})", ""]
    if report.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report.warnings] + [""]
    return "\n".join(lines)


def to_html(report: Report, png: bytes) -> str:
    e = html.escape
    marks, notes = _notes(report)
    rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row[:-1])
                   + (f'<td><a href="#flag-{mark[1:-1]}">{mark}</a></td>' if mark else "<td></td>") + "</tr>"
                   for (_, row), mark in zip(_rows(report), marks))
    flags = "".join(f'<li id="flag-{i}">{e(n)}</li>' for i, n in enumerate(notes, start=1))
    variance = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in _variance_rows(report))
    warnings = "".join(f"<li>{e(w)}</li>" for w in report.warnings)
    colour = "#b00020" if report.srm.mismatch else "#1b5e20"
    img = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Experiment report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:0.9em}}.wide{{overflow-x:auto}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}}td:first-child{{text-align:left}}
</style></head>
<body><h1>Experiment report</h1>
<p style="color:{colour};font-weight:bold">{e(srm_line(report))}</p>
<div class="wide"><table id="metrics"><tr>{''.join(f'<th>{e(h)}</th>' for h in HEADERS)}</tr>{rows}</table></div>
{'<ol class="flags">' + flags + '</ol>' if flags else ''}
<p>alpha {report.alpha:g}; p adj: {e(report.correction)} ({e(report.scope)}); p tests the absolute effect;
relative CIs are on the log scale.</p>
{'<h2>Variance reduction by CUPED</h2><table><tr><th>metric</th><th>variant</th><th>adjustment</th><th>θ</th><th>variance reduction</th></tr>' + variance + '</table>' if variance else ''}
<h2>Relative lifts</h2><img id="forest-plot" alt="forest plot of relative lifts" src="data:image/png;base64,{img}">
{'<h2>Warnings</h2><ul>' + warnings + '</ul>' if warnings else ''}
</body></html>
"""


def plot_path(out: Path) -> Path:
    """Where the markdown report ``out`` keeps its forest plot: ``NAME_forest.png`` beside it."""
    return Path(out).with_name(Path(out).stem + "_forest.png")


def emit(report: Report, fmt: str, out: Path | None, console) -> list[Path]:
    """Render ``report`` as ``fmt`` to ``out`` (or the console); returns the files written. Everything
    is rendered first; a markdown report's plot is renamed into place just before the report."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    written = []
    if fmt == "table":
        if out is None:
            print_table(report, console)
            return written
        from rich.console import Console

        buf = io.StringIO()
        print_table(report, Console(file=buf, width=200, force_terminal=False))
        text = buf.getvalue()
    elif fmt == "json":
        text = to_json(report) + "\n"
    elif fmt == "markdown":
        png = forest_plot_png(report)
        if out is None:
            image = "data:image/png;base64," + base64.b64encode(png).decode()
        else:
            image = plot_path(out).name
        text = to_markdown(report, image)
    else:
        text = to_html(report, forest_plot_png(report))
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with atomic.writing(out) as tmp:
            tmp.write_bytes(text.encode("utf-8"))
            if fmt == "markdown":
                atomic.write_bytes(plot_path(out), png)
                written.append(plot_path(out))
        written.append(Path(out))
    return written
