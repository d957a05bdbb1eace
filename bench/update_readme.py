"""Write the README's Results section from the files `make demo` and `make bench` produce.

The section between the two markers below is replaced by `runs/demo/summary.md` (the last
`make demo`) and the figures of `bench/results.md` (the last `make bench`), so no result in the
README is typed by hand. `make demo` and `make bench` run this at the end; without a demo run
(`--demo` has no summary.md) the README's demo block is kept as it is.

    python bench/update_readme.py [--demo runs/demo]
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import atomic

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start (bench/update_readme.py writes this; do not edit) -->", "<!-- results:end -->"


def demo_block(demo: Path) -> str:
    summary = demo / "summary.md"
    if not summary.is_file():
        return "_No `make demo` run yet: run it to fill this in._\n"
    text = summary.read_text()
    text = re.sub(r"^# ", "#### ", text, flags=re.M)  # nest its title under the README's headings
    return f"From `make demo` (`{summary.relative_to(ROOT) if summary.is_relative_to(ROOT) else summary}`):\n\n{text.strip()}\n"


def bench_block(results: Path) -> str:
    if not results.is_file():
        return "_No `make bench` run yet: run it to fill this in._\n"
    text = results.read_text()
    first = text.split("\n## ", 1)
    header = first[0].splitlines()
    stamp = next((ln for ln in header if ln.startswith("Written by")), "")
    body = "\n## ".join([""] + first[1].split("\n## ")) if len(first) > 1 else ""
    body = re.sub(r"^## ", "#### ", body, flags=re.M)
    return f"From `make bench` (`bench/results.md`). {stamp}\n{body.rstrip()}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, default=ROOT / "runs" / "demo")
    args = ap.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: the results markers are missing")
    head, rest = text.split(START, 1)
    old, tail = rest.split(END, 1)
    if not (args.demo / "summary.md").is_file() and "### The demo\n\n" in old and "### The benchmarks" in old:
        demo = old.split("### The demo\n\n", 1)[1].split("### The benchmarks", 1)[0]  # no demo run here: keep the last
    else:
        demo = f"{demo_block(args.demo.resolve())}\n"
    block = f"{START}\n\n### The demo\n\n{demo}### The benchmarks\n\n{bench_block(ROOT / 'bench' / 'results.md')}\n{END}"
    new = head + block + tail
    atomic.write_text(readme, new)
    print(f"updated the Results section of {readme}")


if __name__ == "__main__":
    main()
