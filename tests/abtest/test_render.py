"""The report as a person reads it: the console table at any width, and the HTML page in a real browser."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from abtest.render import _ci, _f, _p, _pct, emit, print_table
from abtest.report import ReportConfig, build_report

WIDTHS = (60, 80, 120)
TAB_BLUE = np.array([31, 119, 180])  # matplotlib's default line colour: the forest plot's intervals


@pytest.fixture
def three_arms(ref_df, tmp_path):
    """Two treatment arms with long names, CUPED, a ratio metric: the widest table there is."""
    df = ref_df.copy()
    df["variant"] = np.array(["control", "treatment_lsvcr_comments", "treatment_sasrec_baseline"])[df["user_id"] % 3]
    df = df.rename(columns={"metric": "comment_watch_time_seconds"})
    path = tmp_path / "units.parquet"
    df.to_parquet(path)
    config = ReportConfig(metrics=("comment_watch_time_seconds",),
                          ratios=(("watch_time_per_session", "comment_watch_time_seconds", "sessions"),),
                          covariates=(("comment_watch_time_seconds", "pre", None),))
    return build_report(path, config)


def _rendered(report, width: int) -> str:
    console = Console(width=width, record=True)
    print_table(report, console)
    return console.export_text()


def _assert_whole(report, text: str, width: int) -> None:
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    lines = text.splitlines()
    for m in report.metrics:
        for piece in (m.name, m.variant, _f(m.control_mean), _f(m.treatment_mean), _f(m.abs_effect), _pct(m.rel_effect),
                      _p(m.p_value), _p(m.p_value_adjusted)):
            assert any(piece in line for line in lines), (width, piece)
        for ci in (m.abs_ci, m.rel_ci):
            if ci is not None:  # each CI whole on one line: both numbers, brackets and all
                assert any(_ci(ci, pct=ci is m.rel_ci) in line for line in lines), (width, ci)


@pytest.mark.parametrize("width", WIDTHS)
def test_table_shows_full_names_and_whole_numbers(run_dir, three_arms, width):
    for report in (build_report(run_dir, ReportConfig()), three_arms):
        text = _rendered(report, width)
        assert text.startswith("SRM")
        _assert_whole(report, text, width)


def test_table_is_a_table_where_it_fits_and_blocks_where_it_does_not(three_arms):
    wide, narrow = _rendered(three_arms, 200), _rendered(three_arms, 80)
    header = [line for line in wide.splitlines() if line.startswith("metric ")]
    assert len(header) == 1 and header[0].split()[:4] == ["metric", "variant", "control", "treatment"]
    assert not any(line.startswith("metric ") for line in narrow.splitlines())
    assert "— treatment_lsvcr_comments vs control" in narrow  # one block per metric and arm
    assert narrow.count("rel effect") == len(three_arms.metrics)


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium is not installed and could not be: `make test` installs Debian's chromium with "
                    "apt-get, which is missing here or failed (see .venv/apt.log)")
    return found


def test_html_report_in_headless_chromium(run_dir, tmp_path):
    chromium = _chromium()
    report = build_report(run_dir, ReportConfig())
    page = tmp_path / "report.html"
    assert emit(report, "html", page, Console(record=True)) == [page]
    shot = tmp_path / "report.png"
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    run = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]

    # the page the browser built shows every metric, in the table, and the forest plot
    for m in report.metrics:
        assert f"<td>{m.name}</td>" in dom.stdout, m.name
    assert '<img id="forest-plot"' in dom.stdout and 'src="data:image/png;base64,' in dom.stdout

    # the screenshot: a PNG, not blank, and the plot's blue intervals were painted
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, borders, plot: not a blank page
    blue = np.abs(pixels - TAB_BLUE).sum(axis=2) < 40
    assert blue.sum() > 500, "the forest plot's intervals are not on the screenshot"
