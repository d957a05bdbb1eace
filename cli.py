"""The `lsvcr` command line: thin typer commands that parse options, call one package function and
render the result. Bad input raises a package ``InputError`` and exits with code 2 and one line."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from abtest.errors import InputError as AbtestInputError
from abtest.offline_ab import DEFAULT_ESTIMATOR as DEFAULT_OFFLINE_ESTIMATOR
from lsvcr.errors import InputError as LsvcrInputError
from simulator.errors import InputError as SimulatorInputError

INPUT_ERRORS = (SimulatorInputError, AbtestInputError, LsvcrInputError)

app = typer.Typer(
    help="LSVCR toolkit: train the LLM-enhanced joint video & comment recommender, simulate a "
    "short-video platform with comment sections, and decide with A/B statistics whether it beats "
    "today's recommender.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build and import datasets in the LSVCR layout.", no_args_is_help=True)
abtest_app = typer.Typer(help="Run and analyse A/B experiments; compare policies offline.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(abtest_app, name="abtest")

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> None:
    """Print one clear line and exit with code 2 (bad input)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def handles_input_errors(fn):
    """Map a package ``InputError`` (and unreadable paths) to one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except INPUT_ERRORS as e:
            fail(str(e))
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
            fail(f"{e.strerror or type(e).__name__}: {e.filename}")

    return wrapper


# --------------------------------------------------------------------------------------------
# lsvcr simulate
# --------------------------------------------------------------------------------------------
def _simulation_config(config_file, **overrides):
    from simulator import SimConfig

    base = SimConfig.from_toml(config_file) if config_file else SimConfig()
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})


def _run_simulation(config, out: Path, policy: str, explore, temperature, shard, quiet: bool, on_ray=None) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.run import simulate

    with Progress(
        TextColumn("simulating"), BarColumn(), TextColumn("day {task.completed:.1f}/{task.total:g}"),
        TimeElapsedColumn(), console=err_console, disable=quiet, transient=True,
    ) as bar:
        task = bar.add_task("sim", total=config.days)
        return simulate(config, out, policy, explore, temperature, shard,
                        progress=lambda days: bar.update(task, completed=days), on_ray=on_ray)


RAY_HELP = ("Run the users as Ray shards (one actor per shard; each day's deltas exchanged through Ray). "
            "Without --ray-address: a local Ray with this machine's cores. The run directory is the one-process run's.")
RAY_ADDRESS_HELP = "Join this Ray cluster: auto (the running cluster) or HOST:PORT. Implies --ray."
RAY_SHARDS_HELP = "Shard actors on Ray (default: the cluster's CPUs). Implies --ray."  # no [..]: rich markup


def ray_options(ray: bool, address: Optional[str], shards: Optional[int]):
    """``simulator.ray.RayOptions`` when any --ray option is given, else None (Ray is not imported)."""
    if not (ray or address or shards is not None):
        return None
    try:
        from simulator.ray import RayOptions
    except ImportError:
        fail("--ray needs Ray: pip install 'lsvcr[ray]'")
    return RayOptions(address=address, shards=shards)


def render_simulation_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"calibration — policy {summary['policy']}, {summary['users']} users, "
                        f"{summary['events']:,} events", title_justify="left")
    for col in ("metric", "value", "target", "within ±30%"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for row in summary["calibration"]:
        ok = row["within_30pct"]
        mark = "–" if ok is None else ("[green]yes[/]" if ok else "[red]no[/]")
        target = "–" if row["target"] is None else f"{row['target']:g}"
        table.add_row(row["metric"], f"{row['value']:.4f}", target, mark)
    console.print(table)
    console.print(
        f"per user: video watch {summary['video_watch_s_per_user']:.1f} s, comment watch "
        f"{summary['comment_watch_s_per_user']:.1f} s, {summary['sessions_per_user']:.2f} sessions "
        f"({summary['wall_s']:.1f} s wall, {summary['events'] / max(summary['wall_s'], 1e-9):,.0f} events/s)"
    )


@app.command()
@handles_input_errors
def simulate(
    out: Path = typer.Option(..., "--out", help="Run directory to create (must not exist or be empty)."),
    users: Optional[int] = typer.Option(None, "--users", help="Simulated users [default 2000]."),
    videos: Optional[int] = typer.Option(None, "--videos", help="Videos in the catalogue [default 1000]."),
    days: Optional[int] = typer.Option(None, "--days", help="Simulated days [default 2]."),
    policy: str = typer.Option("popularity", "--policy", help="random | popularity | oracle (ranks by the latent truth: the ceiling)."),
    explore: Optional[float] = typer.Option(None, "--explore", metavar="EPS", help="ε-exploration: with probability EPS show a uniformly random slate (logs exact propensities)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", metavar="T", help="Sample slates from softmax(score/T) (Plackett–Luce; logs exact propensities)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the world and every user's random streams [default 0]."),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE.toml", help="TOML with [world], [behaviour], [run] tables overriding any field of simulator.config."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="i/n", help="Simulate users with user_id % n == i; shards exchange daily world deltas through OUT/_exchange."),
    ray: bool = typer.Option(False, "--ray", help=RAY_HELP),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDR", help=RAY_ADDRESS_HELP),
    ray_shards: Optional[int] = typer.Option(None, "--ray-shards", metavar="N", help=RAY_SHARDS_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Simulate a short-video platform with comment sections and write a run directory.

    Writes videos/comments/users.parquet, truth/ (latent state), events.parquet (one row per
    impression, play, comment open/read/like/post, session start/end, with propensities),
    manifest.json and summary.json, then prints the calibration table.

    Example: lsvcr simulate --out runs/sim --users 2000 --days 2 --policy popularity --explore 0.1

    On Ray: lsvcr simulate --out runs/sim --users 2000 --ray (a local Ray on this machine's cores), or
    --ray-address auto | HOST:PORT to join a cluster.
    """
    from simulator.run import parse_shard

    if policy not in ("random", "popularity", "oracle"):
        fail(f"unknown policy {policy!r}: choose one of random, popularity, oracle")
    cfg = _simulation_config(config, n_users=users, n_videos=videos, days=days, seed=seed)
    summary = _run_simulation(cfg, out, policy, explore, temperature, parse_shard(shard), quiet,
                              ray_options(ray, ray_address, ray_shards))
    render_simulation_summary(summary)
    console.print(f"wrote {out}")


DEMO_LOGGING_TEMPERATURE = 1.0  # the logging run: popularity sampled as a Plackett–Luce ranking (exact propensities)
DEMO_SIZES = {
    "default": dict(users=1000, videos=1000, days=2, ab_users=2000, sasrec_epochs=30, lsvcr_epochs=4, align_steps=10),
    "quick": dict(users=300, videos=300, days=1, ab_users=300, sasrec_epochs=10, lsvcr_epochs=2, align_steps=2),
}


def offline_vs_online(offline: dict, online: dict) -> list[str]:
    """Markdown rows: each metric's offline prediction beside the online A/B's lift, and whether they agree
    (the same sign where the online lift is significant; the offline interval covering the online point)."""
    def pct(x):
        return "–" if x is None else f"{100 * x:+.1f}%"

    rows = ["| metric | offline prediction | online A/B | agree |", "|---|---|---|---|"]
    by_name = {}
    for m in online["metrics"]:
        if m["variant"] == "treatment" and (m["name"] not in by_name or m.get("cuped")):
            by_name[m["name"]] = m
    for m in offline["metrics"]:
        on = by_name.get(m["name"])
        if on is None:
            continue
        if m["rel_effect"] is None:
            off, verdict = "not identified (" + " ".join(m["flags"]) + ")", "–"
        else:
            off = f"{pct(m['rel_effect'])} [{pct(m['rel_ci'][0])}, {pct(m['rel_ci'][1])}]"
            covers = m["rel_ci"][0] <= on["rel_effect"] <= m["rel_ci"][1]
            significant = on["p_value"] is not None and on["p_value"] < online["alpha"]
            same_sign = (m["rel_effect"] > 0) == (on["rel_effect"] > 0)
            verdict = ("yes" if covers and (same_sign or not significant) else "no") + (
                f" (sign {'agrees' if same_sign else 'differs'}, CI {'covers' if covers else 'misses'} the online point)")
        rows.append(f"| {m['name']} | {off} | {pct(on['rel_effect'])} [{pct(on['rel_ci'][0])}, {pct(on['rel_ci'][1])}], "
                    f"p = {on['p_value']:.3g} | {verdict} |")
    return rows


def run_demo(out: Path, quick: bool, seed: int) -> dict:
    """The whole pipeline on the embedded default world; every artifact under ``out``:
    world/ (logging run) → data/ → models/{sasrec,lsvcr} → offline_eval.json → offline_ab.json
    → ab/ (pre-period + experiment) → report.{json,md,html} → summary.md."""
    import json
    import shutil
    import time

    from abtest.decision import decide
    from abtest.render import emit, to_json
    from abtest.report import ReportConfig, build_report
    from lsvcr.config import FinetuneConfig
    from lsvcr.data.build import build_dataset
    from lsvcr.data.layout import write_dataset
    from lsvcr.evaluate import EvalConfig
    from lsvcr.align import AlignConfig
    from lsvcr.train import align_model, evaluate_model, train_model
    from simulator.experiment import run_experiment, world_config

    size = DEMO_SIZES["quick" if quick else "default"]
    out.mkdir(parents=True, exist_ok=True)
    for name in ("world", "data", "models", "ab", ".world.new"):
        shutil.rmtree(out / name, ignore_errors=True)
    timings: dict[str, float] = {}

    def stage(name: str):
        console.rule(f"[bold]{name}")
        timings[name] = time.perf_counter()

    def done(name: str):
        timings[name] = time.perf_counter() - timings[name]

    stage("1. simulate the platform under an exploring logging policy")
    cfg = _simulation_config(None, seed=seed, n_users=size["users"], n_videos=size["videos"], days=size["days"])
    summary = _run_simulation(cfg, out / "world", "popularity", None, DEMO_LOGGING_TEMPERATURE, None, quiet=False)
    render_simulation_summary(summary)
    done("1. simulate the platform under an exploring logging policy")

    stage("2. build the dataset")
    ds = build_dataset(out / "world")
    write_dataset(ds, out / "data")
    render_dataset_stats(ds, out / "data")
    done("2. build the dataset")

    stage("3. train the control (SASRec) and the treatment (LSVCR: stage 1 + stage 2)")
    models = {"sasrec": out / "models" / "sasrec", "lsvcr": out / "models" / "lsvcr"}
    train_model(out / "data", models["sasrec"], FinetuneConfig(model="sasrec", epochs=size["sasrec_epochs"], seed=seed), console)
    aligned = out / "models" / "lsvcr-aligned"  # stage 1: the packaged MiniLM under LoRA
    align_model(out / "data", aligned, AlignConfig(batch_size=16, max_prompt_tokens=256, max_steps=size["align_steps"],
                                                   seed=seed), console)
    train_model(out / "data", models["lsvcr"], FinetuneConfig(model="lsvcr", task="both", epochs=size["lsvcr_epochs"], seed=seed),
                console, init=aligned)
    done("3. train the control (SASRec) and the treatment (LSVCR: stage 1 + stage 2)")

    stage("4. evaluate offline (test split)")
    offline_eval = {}
    for name, model in (("popularity", "popularity"), ("sasrec", str(models["sasrec"])), ("lsvcr", str(models["lsvcr"]))):
        for protocol in ("sampled100", "full"):
            result = evaluate_model(model, out / "data", EvalConfig(protocol=protocol, split="test", seed=seed))
            offline_eval.setdefault(name, {})[protocol] = result["tasks"]
            render_metrics(result)
    (out / "offline_eval.json").write_text(json.dumps(offline_eval, indent=1))
    done("4. evaluate offline (test split)")

    stage("5. predict the A/B offline, from the logs (off-policy)")
    specs = {"control": f"sasrec:{models['sasrec']}", "treatment": f"lsvcr:{models['lsvcr']}"}
    offline = offline_prediction(out / "world", specs["control"], specs["treatment"])
    offline = json.loads(json.dumps(offline).replace(json.dumps(str(out) + "/")[1:-1], ""))  # paths relative to OUT
    (out / "offline_ab.json").write_text(json.dumps(offline, indent=1, allow_nan=False))
    render_offline(offline, console)
    done("5. predict the A/B offline, from the logs (off-policy)")

    stage("6. online A/B on simulated users (1 pre-period day, 1 experiment day)")
    base = world_config(out / "world")
    ab_cfg = base.replace(n_users=size["ab_users"], days=2, pre_days=1, log_slates=False, noise_seed=base.seed + 1)

    def factory(spec):
        return lambda w, comments, config: resolve_policy(spec, w, comments, config)

    ab_summary = run_experiment(ab_cfg, out / "ab", factory(specs["control"]), factory(specs["treatment"]),
                                (specs["control"], specs["treatment"]), world_dir=out / "world")
    console.print(f"{ab_summary['users']} users, {ab_summary['events']:,} events in {ab_summary['wall_s']:.0f} s")
    done("6. online A/B on simulated users (1 pre-period day, 1 experiment day)")

    stage("7. report")
    report = build_report(out / "ab", ReportConfig())
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    emit(report, "table", None, console)
    for fmt in ("json", "markdown", "html"):
        emit(report, fmt, out / f"report.{ {'markdown': 'md'}.get(fmt, fmt) }", console)
    decision = decide(json.loads(to_json(report)), "comment_watch_time", ("video_watch_time", "sessions"))
    done("7. report")

    lines = [f"# LSVCR demo — verdict: **{decision.verdict.upper()}**", ""]
    lines += [f"* {r}" for r in decision.reasons]
    lines += ["", "Offline prediction (before launch, from the logging run) against the online A/B — treatment vs "
              "control, relative lift per user, 95% CI:", ""] + offline_vs_online(offline, json.loads(to_json(report)))
    lines += ["", "Paper (Kuaishou online A/B): +4.13% comment watch time."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")  # results only: the same bytes per seed
    (out / "timings.json").write_text(json.dumps({"stages_s": timings}, indent=1))  # wall-clock, apart
    console.rule("[bold]summary")
    console.print("\n".join(lines + ["", "| stage | seconds |", "|---|---|"] + [f"| {k} | {v:.0f} |" for k, v in timings.items()]),
                  highlight=False)
    console.print(f"every artifact is in {out}")
    return {"verdict": decision.verdict, "reasons": decision.reasons, "timings": timings}


@app.command()
@handles_input_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Directory for every artifact of the demo."),
    quick: bool = typer.Option(False, "--quick", help="A small world for a fast look (about 3 minutes)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """The whole pipeline on the embedded default world: simulate under an exploring logging policy,
    build the dataset, train SASRec (control) and LSVCR (treatment), evaluate offline, compare the arms
    off-policy from the logs, run an online A/B with a pre-period, report, and call it:
    ship / don't ship / inconclusive."""
    run_demo(out, quick, seed)


# --------------------------------------------------------------------------------------------
# lsvcr data build | import-recbole, lsvcr train, lsvcr evaluate (the recommender)
# --------------------------------------------------------------------------------------------
def render_dataset_stats(ds, out: Path) -> None:
    from rich.table import Table

    stats = ds.stats()
    inter = ds.meta.get("interactions")
    if isinstance(inter, dict):
        stats.update({f"interactions.{k}": v for k, v in inter.items()})
    elif inter is not None:
        stats["interactions"] = inter
    table = Table(title=f"dataset {out}", title_justify="left")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for k, v in stats.items():
        table.add_row(k, f"{v:,}" if isinstance(v, int) else f"{v:g}")
    console.print(table)


@data_app.command("build")
@handles_input_errors
def data_build(
    run_dir: Path = typer.Argument(..., help="A simulation run directory (lsvcr simulate --out)."),
    out: Path = typer.Option(..., "--out", help="Dataset directory to write (official LSVCR layout)."),
    long_play_fraction: float = typer.Option(0.8, "--long-play-fraction", help="A play is positive when watch seconds >= this fraction of the duration."),
    long_read_s: float = typer.Option(2.5, "--long-read-s", help="A comment read of at least this many seconds is an interaction."),
    history_len: int = typer.Option(50, "--history-len", help="Most recent history entries kept per example."),
) -> None:
    """Build the dataset (photo.json, comment.json, rec.*.json, comm_rank.*.json, id lists) from a
    simulation's event log, with leave-last-out splits, and print its statistics.

    Example: lsvcr data build runs/sim --out runs/data
    """
    from lsvcr.data.build import BuildConfig, build_dataset
    from lsvcr.data.layout import write_dataset

    ds = build_dataset(run_dir, BuildConfig(long_play_fraction, long_read_s, history_len))
    write_dataset(ds, out)
    render_dataset_stats(ds, out)
    console.print(f"wrote {out}")


@data_app.command("import-recbole")
@handles_input_errors
def data_import_recbole(
    inter: Path = typer.Argument(..., help="RecBole NAME.inter file, or a directory with NAME.inter and NAME.item."),
    out: Path = typer.Option(..., "--out", help="Dataset directory to write."),
    item: Optional[Path] = typer.Option(None, "--item", help="The .item file (default: beside the .inter)."),
    title_field: Optional[str] = typer.Option(None, "--title-field", help="Item field holding the title (default: the first field whose name contains 'title')."),
    history_len: int = typer.Option(50, "--history-len"),
) -> None:
    """Import RecBole atomic files as a video-only dataset (leave-one-out by timestamp).

    Example: lsvcr data import-recbole ml-100k/ --out runs/ml100k
    """
    from lsvcr.data.layout import write_dataset
    from lsvcr.data.recbole import import_recbole

    ds = import_recbole(inter, item, title_field, history_len)
    write_dataset(ds, out)
    render_dataset_stats(ds, out)
    console.print(f"wrote {out}")


def render_metrics(result: dict) -> None:
    from rich.table import Table

    from lsvcr.metrics import METRICS

    if result["protocol"] == "ips":
        return render_ips_metrics(result)
    table = Table(title=f"{result['model']} — {result['protocol']}, {result['split']} split", title_justify="left")
    table.add_column("task")
    table.add_column("n", justify="right")
    for m in METRICS:
        table.add_column(m, justify="right")
    for task, r in result["tasks"].items():
        name = task + (f" ({result['fallback'][task]})" if task in result.get("fallback", {}) else "")
        table.add_row(name, str(r["n"]), *[f"{r[m]:.4f}" if m in r else "–" for m in METRICS])
    console.print(table)


def render_ips_metrics(result: dict) -> None:
    from rich.table import Table

    from lsvcr.metrics import IPS_METRICS

    r = result["tasks"]["comment"]
    model = result["model"] + (" (comments by popularity)" if "comment" in result.get("fallback", {}) else "")
    table = Table(title=f"{model} — ips: comment task on the logged slates, {result['split']} split, "
                        f"{r['requests']} requests, {r['positives']} positives (ESS {r['ess']:.0f}); "
                        "IPS = self-normalised inverse-propensity weights (exposure-debiased), naive = unweighted",
                  title_justify="left")
    table.add_column("comment")
    for m in IPS_METRICS:
        table.add_column(m, justify="right")
    rows = [("IPS", r, ""), ("naive", r["naive"], "")]
    if "minus_popularity" in r:  # paired, on the same positives
        rows.append(("IPS − popularity", r["minus_popularity"], "+"))
    for name, row, sign in rows:
        table.add_row(name, *[f"{row[m]:{sign}.4f} ± {row[m + '_se']:.4f}" for m in IPS_METRICS])
    console.print(table)


@app.command()
@handles_input_errors
def train(
    data: Path = typer.Option(..., "--data", help="Dataset directory (official LSVCR layout)."),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    model: str = typer.Option("lsvcr", "--model", help="lsvcr | sasrec (the control: video ids only)."),
    task: Optional[str] = typer.Option(None, "--task", help="video | comment | both (sasrec: video). Default: both with --stage all, else video."),
    stage: Optional[str] = typer.Option(None, "--stage", help="all (align -> embed -> fine-tune; the default for lsvcr, as the official code trains) | finetune (stage 2 on frozen text embeddings; MiniLM, or an aligned dir with --init; the default for sasrec and with --init) | align (stage 1 only: --out becomes the aligned dir)."),
    no_align: bool = typer.Option(False, "--no-align", help="Skip stage 1: the ablation (stage 2 on MiniLM features; same as --stage finetune)."),
    init: Optional[Path] = typer.Option(None, "--init", help="--stage finetune: start from this aligned dir (written by --stage align)."),
    aligned_out: Optional[Path] = typer.Option(None, "--aligned-out", help="--stage all: where the aligned dir goes (default: OUT-aligned beside OUT)."),
    llm: str = typer.Option("minilm", "--llm", help="Stage 1 LLM: minilm (packaged, offline) or a local Hugging Face model dir (encoder or decoder)."),
    llm_kind: str = typer.Option("auto", "--llm-kind", help="auto | encoder | decoder"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run modelling code shipped with the LLM checkpoint (ChatGLM); only for checkpoints you trust."),
    dtype: str = typer.Option("float32", "--dtype", help="LLM weights: float32 | bfloat16 | float16"),
    prompt_templates: Optional[Path] = typer.Option(None, "--prompt-templates", help="Replace the English prompt templates (.json/.toml; two per task)."),
    align_batch_size: int = typer.Option(128, "--align-batch-size", help="Stage 1 global batch (both tasks mixed; split over --ddp ranks)."),
    align_lr: float = typer.Option(3e-4, "--align-lr", help="Stage 1 AdamW lr (3 % warm-up, linear decay)."),
    align_epochs: int = typer.Option(1, "--align-epochs", help="Stage 1 epochs."),
    align_steps: Optional[int] = typer.Option(None, "--align-steps", help="Stop stage 1 after this many steps (CPU budgets)."),
    max_prompt_tokens: int = typer.Option(512, "--max-prompt-tokens", help="Prompt + response tokens; oldest history lines are dropped first, never the response."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="Stage 1: checkpoint every N steps (0: never)."),
    resume: bool = typer.Option(False, "--resume", help="Stage 1: continue an interrupted run from its checkpoint (same options)."),
    ddp: int = typer.Option(0, "--ddp", help="Stage 1 on N local processes (torchrun; gloo on CPU, nccl on GPUs)."),
    selection: str = typer.Option("per_task", "--selection", help="--task both: per_task (a model per task, each stopped at its own best val NDCG@5, as the official code) | joint (one model on both tasks, stopped on the mean)."),
    epochs: int = typer.Option(50, "--epochs", help="At most this many epochs (early stopping on val NDCG@5, patience 5)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per batch (default 512 for lsvcr; user windows, default 64, for sasrec)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads (on a shared box 1 beats 2)."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Read the original code's pickled id lists (pickle can run code)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a recommender: LSVCR (stage 1 alignment with an LLM under LoRA, stage 2 fine-tuning) or
    the SASRec control.

    Example: lsvcr train --data runs/data --out runs/model --stage all --align-steps 200
    """
    import os
    from dataclasses import replace

    from lsvcr.config import FinetuneConfig
    from lsvcr.train import align_model, train_model

    stage = stage or ("all" if model == "lsvcr" and init is None else "finetune")
    if stage not in ("finetune", "align", "all"):
        fail(f"--stage must be finetune, align or all, got {stage!r}")
    if stage != "finetune" and model != "lsvcr":
        fail(f"--stage {stage} applies to --model lsvcr only (the control has no stage 1)")
    if init is not None and stage != "finetune":
        fail("--init goes with --stage finetune (--stage all aligns itself)")
    if no_align and stage != "all":
        fail("--no-align goes with --stage all")
    task = task or ("both" if stage == "all" else "video")
    cfg = FinetuneConfig(model=model, task=task, epochs=epochs, device=device, seed=seed, threads=threads,
                         selection=selection)
    if batch_size is not None:
        cfg = replace(cfg, batch_size=batch_size, sasrec_batch_size=batch_size)
    if stage in ("align", "all") and not no_align:
        from lsvcr.align import AlignConfig

        acfg = AlignConfig(llm=llm, llm_kind=llm_kind, dtype=dtype, trust_remote_code=trust_remote_code,
                           prompt_templates=str(prompt_templates) if prompt_templates else None,
                           batch_size=align_batch_size, lr=align_lr, epochs=align_epochs, max_steps=align_steps,
                           max_prompt_tokens=max_prompt_tokens, checkpoint_every=checkpoint_every, seed=seed,
                           threads=threads, device=device)
        init = out if stage == "align" else (aligned_out or out.with_name(out.name + "-aligned"))
        if ddp > 1:
            import subprocess

            from lsvcr.align_main import argv as align_argv

            args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ddp}",
                    "-m", "lsvcr.align_main", *align_argv(acfg, data, init, resume, allow_pickle, quiet)]
            if subprocess.run(args).returncode != 0:
                fail(f"stage 1 under --ddp {ddp} failed (see the output above)")
        else:
            rep = align_model(data, init, acfg, None if quiet else err_console, allow_pickle, resume)
            if int(os.environ.get("RANK", "0")) == 0:
                last = rep["losses"][-1] if rep["losses"] else {}
                console.print(f"stage 1: {rep['steps']} steps, {rep['samples_per_s']:.2f} samples/s, last loss "
                              + " ".join(f"{k} {v:.4f}" for k, v in last.items()) + f"; wrote {init}")
        if stage == "align":
            return
    metrics = train_model(data, out, cfg, None if quiet else err_console, allow_pickle, init)
    tr = metrics["train"]
    best = ", ".join(f"{t} {r['best_epoch']}" for t, r in tr["tasks"].items()) if tr.get("tasks") else tr["best_epoch"]
    console.print(f"best epoch {best} (val NDCG@5 {tr['best_val_ndcg5']:.4f}), "
                  f"{tr['train_seconds']:.1f} s training, {tr['targets_per_s']:,.0f} targets/s")
    render_metrics(metrics["test_sampled100"])
    console.print(f"wrote {out}")


@app.command()
@handles_input_errors
def evaluate(
    model: str = typer.Option(..., "--model", help="A model directory, or 'popularity' (the baseline)."),
    data: Path = typer.Option(..., "--data", help="Dataset directory."),
    protocol: str = typer.Option("sampled100", "--protocol", help="sampled100 (paper) | full (every video / every comment of the video) | ips (exposure-debiased: inverse-propensity-weighted metrics on the logged comment slates; needs data built from a run logged with --temperature or --explore)."),
    split: str = typer.Option("test", "--split", help="train | val | test"),
    fmt: str = typer.Option("table", "--format", help="table | json"),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled candidates."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle"),
) -> None:
    """Recall@1/5/10, NDCG@5/10, MRR@5/10 on the video and comment tasks; with --protocol ips,
    IPS-weighted Recall@1/5/10 and DCG@5/10 (± standard errors) on the logged comment slates, which
    do not reward a model for agreeing with the logging policy (lsvcr/evaluate.py explains the estimator).

    A model trained for one task ranks the other by popularity (as the control does for comments).

    Example: lsvcr evaluate --model runs/model-video --data runs/data --protocol full --format json
    """
    import json

    from lsvcr.evaluate import EvalConfig
    from lsvcr.train import evaluate_model

    if fmt not in ("table", "json"):
        fail(f"--format must be table or json, got {fmt!r}")
    if model != "popularity" and not Path(model).is_dir():
        fail(f"--model {model!r} is neither a model directory nor 'popularity'")
    result = evaluate_model(model, data, EvalConfig(protocol=protocol, split=split, seed=seed), allow_pickle)
    if fmt == "json":
        print(json.dumps(result, indent=2))
    else:
        render_metrics(result)


# --------------------------------------------------------------------------------------------
# lsvcr abtest report | power (experiment analysis)
# --------------------------------------------------------------------------------------------
@abtest_app.command("report")
@handles_input_errors
def abtest_report(
    input: Optional[Path] = typer.Argument(None, metavar="INPUT", help="An A/B run dir (events.parquet or events/, assignment.parquet) or a per-unit table (.parquet or .csv); or --table."),
    unit_col: str = typer.Option("user_id", "--unit-col", help="Unit (randomisation) id column of a per-unit table."),
    variant_col: str = typer.Option("variant", "--variant-col", help="Variant column of a per-unit table."),
    control: str = typer.Option("control", "--control", metavar="NAME", help="The control variant; every other arm is compared with it."),
    metric: list[str] = typer.Option([], "--metric", metavar="COL", help="A mean/proportion metric column (repeatable). Run dir: a standard metric name; default all, comment watch time first."),
    ratio: list[str] = typer.Option([], "--ratio", metavar="NAME=NUM_COL/DEN_COL", help="A ratio metric: sum(NUM)/sum(DEN) per arm, delta method (repeatable)."),
    covariate: list[str] = typer.Option([], "--covariate", metavar="METRIC=PRE_COL", help="CUPED covariate of a metric; METRIC=PRE_NUM/PRE_DEN for a ratio (repeatable). Run dirs attach pre-period covariates themselves."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level; intervals are 1 - alpha."),
    correction: str = typer.Option("holm", "--correction", help="Multiple-testing correction: holm | bh | none."),
    scope: str = typer.Option("global", "--scope", help="Family for the correction: global | variant | metric."),
    sequential: bool = typer.Option(False, "--sequential", help="Always-valid p-values and intervals (mSPRT; asymptotic confidence sequence in the extras)."),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME=W,...", help="Designed split for the SRM check, e.g. control=50,treatment=50 (default: equal split)."),
    srm_alpha: float = typer.Option(0.001, "--srm-alpha", help="Alpha of the sample-ratio-mismatch check."),
    winsorize: Optional[float] = typer.Option(None, "--winsorize", metavar="Q", help="Cap mean metrics at their pooled Q quantile (e.g. 0.99)."),
    mann_whitney: bool = typer.Option(False, "--mann-whitney", help="Add Mann–Whitney p-values for mean metrics."),
    fmt: str = typer.Option("table", "--format", help="table | json | markdown | html (markdown and html add a forest plot)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Write here (atomically) instead of stdout."),
    engine: str = typer.Option("duckdb", "--engine", help="Where the metrics' SQL runs: duckdb (embedded) | spark (PySpark 4; only aggregates leave the cluster)."),
    spark_master: Optional[str] = typer.Option(None, "--spark-master", metavar="URL", help="Spark master, e.g. local[4] or spark://host:7077 (default: local[*])."),
    table: Optional[str] = typer.Option(None, "--table", metavar="NAME", help="A per-unit table the engine knows by name (Spark: catalog or Hive table) instead of INPUT."),
) -> None:
    """Analyse an experiment: SRM, lifts with CIs, CUPED, ratio metrics, corrections.

    Example: lsvcr abtest report runs/ab --format markdown --out report.md
    On Spark: lsvcr abtest report runs/ab --engine spark --spark-master local[4]
    """
    from abtest.render import FORMATS, emit
    from abtest.report import ReportConfig, build_report
    from abtest.spec import parse_covariate, parse_ratio, parse_split

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    config = ReportConfig(
        unit_col=unit_col, variant_col=variant_col, control=control, metrics=tuple(metric),
        ratios=tuple(parse_ratio(r) for r in ratio), covariates=tuple(parse_covariate(c) for c in covariate),
        alpha=alpha, correction=correction, scope=scope, sequential=sequential, split=parse_split(split),
        srm_alpha=srm_alpha, winsorize=winsorize, mann_whitney=mann_whitney, engine=engine,
        spark_master=spark_master)
    report = build_report(input, config, table=table)
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    for path in emit(report, fmt, out, console):
        err_console.print(f"wrote {path}", highlight=False)


@abtest_app.command("power")
@handles_input_errors
def abtest_power(
    mean: float = typer.Option(..., "--mean", help="Baseline mean of the metric per unit."),
    sd: float = typer.Option(..., "--sd", help="Standard deviation of the metric per unit."),
    rho: float = typer.Option(0.0, "--rho", help="Correlation with the pre-period covariate (CUPED: variance x (1 - rho^2))."),
    mde: Optional[float] = typer.Option(None, "--mde", help="RELATIVE minimum detectable effect (0.05 = +5% of --mean): solve for units."),
    n: Optional[int] = typer.Option(None, "--n", help="Units PER ARM (equal split): solve for the MDE."),
    alpha: float = typer.Option(0.05, "--alpha", help="Two-sided significance level."),
    power: float = typer.Option(0.8, "--power", help="Power."),
    fmt: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """Units per arm for a relative MDE, or the MDE for a number of units (normal approximation).

    Example: lsvcr abtest power --mean 30 --sd 60 --rho 0.7 --mde 0.02
    """
    import json

    from rich.table import Table

    from abtest.power import plan

    result = plan(mean, sd, rho=rho, mde_rel=mde, n_per_arm=n, alpha=alpha, power=power)
    if fmt == "json":
        typer.echo(json.dumps(result._asdict(), indent=2))
        return
    if fmt != "table":
        fail(f"--format {fmt!r}: choose table or json")
    table = Table(title=f"power {result.power:g}, alpha {result.alpha:g} (two-sided), rho {result.rho:g}", title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("units per arm", f"{result.n_per_arm:,.0f}")
    table.add_row("units in total", f"{result.n_total:,.0f}")
    table.add_row("MDE (absolute)", f"{result.mde_abs:.6g}")
    table.add_row("MDE (relative)", f"{100 * result.mde_rel:.3f}%")
    table.add_row("sd after CUPED", f"{result.sd_adjusted:.6g}")
    console.print(table)



# --------------------------------------------------------------------------------------------
# lsvcr abtest run (control vs treatment on simulated users)
# --------------------------------------------------------------------------------------------
POLICY_SPECS = "random | popularity | oracle | sasrec:MODEL_DIR | lsvcr:MODEL_DIR; popularity@T, oracle@T: sampled (Plackett–Luce at temperature T)"


def resolve_policy(spec: str, world, comments, config):
    """A simulator policy from a SPEC: a built-in name, KIND:MODEL_DIR for a trained model, or
    NAME@T for a built-in sampled as a Plackett–Luce ranking at temperature T (a "tempered" variant).

    ``sasrec:DIR`` is the control arm "SR without comments or LLM": SASRec ranks videos and comments
    are ranked by likes. ``lsvcr:DIR`` ranks videos with DIR's video model and comments with the
    comment model beside it (see lsvcr.policy).
    """
    from simulator.run import BUILTIN_POLICIES, make_policy

    name, at, temp = spec.rpartition("@")
    if at and name in ("popularity", "oracle"):
        try:
            temperature = float(temp)
        except ValueError:
            fail(f"policy spec {spec!r}: the temperature after @ must be a number")
        return make_policy(name, world, comments, config, temperature=temperature)
    if spec in BUILTIN_POLICIES:
        return make_policy(spec, world, comments, config)
    kind, sep, path = spec.partition(":")
    if sep and kind in ("sasrec", "lsvcr") and path:
        from lsvcr.policy import load_policy

        return load_policy(kind, Path(path))
    fail(f"unknown policy spec {spec!r}: use {POLICY_SPECS}")


def check_policy_spec(spec: str) -> None:
    """Fail (exit 2) unless ``spec`` names a policy ``resolve_policy`` can build: checked before a Ray run,
    whose workers build the policies."""
    from simulator.run import BUILTIN_POLICIES

    name, at, temp = spec.rpartition("@")
    kind, sep, path = spec.partition(":")
    if at and name in ("popularity", "oracle"):
        try:
            float(temp)
        except ValueError:
            fail(f"policy spec {spec!r}: the temperature after @ must be a number")
    elif sep and kind in ("sasrec", "lsvcr") and path:
        if not Path(path).is_dir():
            fail(f"policy spec {spec!r}: no model directory {path}")
    elif spec not in BUILTIN_POLICIES:
        fail(f"unknown policy spec {spec!r}: use {POLICY_SPECS}")


@abtest_app.command("run")
@handles_input_errors
def abtest_run(
    world: Path = typer.Option(..., "--world", help="A simulation run directory: its world (videos, comments, users) hosts the experiment."),
    control: str = typer.Option(..., "--control", help=f"Control policy SPEC: {POLICY_SPECS}."),
    treatment: str = typer.Option(..., "--treatment", help="Treatment policy SPEC (ignored with --aa)."),
    out: Path = typer.Option(..., "--out", help="A/B run directory to create."),
    users: Optional[int] = typer.Option(None, "--users", help="Users in the experiment [default: the world's]."),
    pre_days: int = typer.Option(1, "--pre-days", help="Days with everyone on control before the split (CUPED covariates)."),
    days: int = typer.Option(1, "--days", help="Experiment days after the pre-period."),
    split: float = typer.Option(0.5, "--split", help="Share of users in treatment."),
    salt: str = typer.Option("lsvcr-ab", "--salt", help="Salt of the hash assignment (a new salt reshuffles users)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the users' behavioural noise [default: the world's seed + 1]."),
    aa: bool = typer.Option(False, "--aa", help="A/A test: control against a second copy of itself."),
    ray: bool = typer.Option(False, "--ray", help=RAY_HELP + " Each shard loads the policies once."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDR", help=RAY_ADDRESS_HELP),
    ray_shards: Optional[int] = typer.Option(None, "--ray-shards", metavar="N", help=RAY_SHARDS_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run a pre-period and an A/B experiment on simulated users; analyse it with `lsvcr abtest report OUT`.

    Users are split by a salted hash of their id; both arms share the world and every user's random
    streams (common random numbers). Writes events.parquet, assignment.parquet, manifest.json.

    Example: lsvcr abtest run --world runs/sim --control sasrec:runs/sasrec --treatment lsvcr:runs/lsvcr --out runs/ab
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.experiment import run_experiment, world_config

    if pre_days < 0 or days < 1:
        fail("--pre-days must be >= 0 and --days >= 1")
    on_ray = ray_options(ray, ray_address, ray_shards)
    if on_ray is not None:  # a bad SPEC fails here, not inside a Ray worker
        for spec in (control,) if aa else (control, treatment):
            check_policy_spec(spec)
    base = world_config(world)
    cfg = base.replace(
        days=pre_days + days, pre_days=pre_days, log_slates=False,
        noise_seed=base.seed + 1 if seed is None else seed,
        **({"n_users": users} if users is not None else {}),
    )

    def factory(spec):
        return lambda w, comments, config: resolve_policy(spec, w, comments, config)

    with Progress(TextColumn("A/B"), BarColumn(), TextColumn("day {task.completed:.1f}/{task.total:g}"),
                  TimeElapsedColumn(), console=err_console, disable=quiet, transient=True) as bar:
        task = bar.add_task("ab", total=cfg.days)
        summary = run_experiment(cfg, out, factory(control), factory(treatment), (control, treatment),
                                 split=split, salt=salt, aa=aa, world_dir=world,
                                 progress=lambda d: bar.update(task, completed=d), on_ray=on_ray)
    console.print(f"{summary['users']} users, {summary['events']:,} events in {summary['wall_s']:.1f} s; "
                  f"wrote {out} — next: lsvcr abtest report {out}")


# --------------------------------------------------------------------------------------------
# lsvcr abtest offline (off-policy evaluation from a logging run, before launch)
# --------------------------------------------------------------------------------------------
def render_offline(result: dict, target: Console) -> None:
    """The prediction (treatment vs control per user-day) first; the per-request detail if present."""
    from rich.table import Table

    def pct(x):
        return "–" if x is None else f"{100 * x:+.1f}%"

    def num(x):
        return "–" if x is None else f"{x:,.4g}"

    level = f"{100 * (1 - result['alpha']):g}% CI"
    table = Table(title=f"offline A/B prediction from {result['logs']} (logging policy {result['logging_policy']}): "
                        f"treatment vs control per {result['unit']}, estimator {result['estimator']}, "
                        f"{result['n_units']:,} units", title_justify="left")
    for col in ("metric", "control", "treatment", f"lift [{level}]", "p", "ESS c / t", "support c / t", "flags"):
        table.add_column(col, justify="left" if col in ("metric", "flags") else "right", overflow="fold")
    for m in result["metrics"]:
        c, t = m["control"], m["treatment"]
        ci = m["rel_ci"]
        lift = "–" if m["rel_effect"] is None else f"{pct(m['rel_effect'])} [{pct(ci[0])}, {pct(ci[1])}]"
        table.add_row(m["name"], num(m["control_mean"]), num(m["treatment_mean"]), lift,
                      "–" if m["p_value"] is None else f"{m['p_value']:.3g}",
                      "–" if c is None else f"{num(c['ess'])} / {num(t['ess'])}",
                      "–" if c is None else f"{c['support']:.3f} / {t['support']:.3f}", " ".join(m["flags"]))
    target.print(table)
    detail = result.get("detail")
    if not detail:
        return
    what = {"item": "top item (position 0)", "slate": "whole slate"}
    for base in detail["logging"]:
        key = (base["kind"], base["metric"], base["level"])
        table = Table(title=f"detail: {base['kind']} {base['metric']} per request, {what[base['level']]} [{level}]: "
                            f"logging policy {num(base['value'])}, n={base['n']:,}", title_justify="left")
        for col in ("policy", "estimator", "estimate [CI]", "rel. lift vs logging", "ESS", "flags"):
            table.add_column(col, justify="left" if col in ("policy", "estimator", "flags") else "right", overflow="fold")
        for r in detail["results"]:
            if (r["kind"], r["metric"], r["level"]) == key:
                est = "–" if r["value"] is None else f"{num(r['value'])} [{num(r['ci'][0])}, {num(r['ci'][1])}]"
                table.add_row(r["policy"], r["estimator"], est, pct(r["rel_effect"]),
                              "–" if r["ess"] is None else f"{r['ess']:,.0f}", " ".join(r["flags"]))
        target.print(table)


def section_model(log):
    """The fitted comment-section response model on a logging run, as ``offline_ab.predict`` calls it."""
    import numpy as np

    from abtest import response_model as rm

    lg = log.logged("comment")
    rows = log.comment_rows(lg.items)
    data = rm.SectionData(np.asarray(lg.user_id), np.asarray(lg.day), rows, lg.rewards["impressions"] > 0,
                          lg.rewards["reads"] > 0, lg.rewards["read_s"], rm.bag_of_words(log.comments.text),
                          np.asarray(log.comments.words), log.comment_likes_by_day())

    context = []  # built on first use, once

    def predictions(kind: str, reward: str, slates, subset=None):
        if kind != "comment" or reward not in rm.OUTPUTS:
            return None
        if not context:
            context.append(rm.Context(data))
        return rm.fit_predict(data, log.config.behaviour.comment_preview, [log.comment_rows(s) for s in slates], reward,
                              users_subset=subset, ctx=context[0])

    return predictions


def offline_prediction(logs: Path, control: str, treatment: str, metrics=None, estimator: str = DEFAULT_OFFLINE_ESTIMATOR,
                       alpha: float = 0.05, detail: bool = False, bootstrap: int = 20) -> dict:
    """Replay control and treatment on a logging run; predict treatment's lift over control per user-day."""
    from abtest.offline_ab import DEFAULT_METRICS, METRICS, predict
    from abtest.ope import compare
    from simulator.replay import load_run, replay

    metrics = list(metrics or DEFAULT_METRICS)
    needs_marginals = detail or estimator in ("iips", "dr")
    log = load_run(logs)
    specs = {"control": control, "treatment": treatment}
    targets = {}
    for name, spec in specs.items():
        policy = resolve_policy(spec, log.world, log.comments, log.config)
        with err_console.status(f"replaying {name} ({spec}) on the logged requests"):
            targets[name] = {kind: t._asdict() for kind, t in replay(log, policy, marginals=needs_marginals).items()}
    logged = {kind: log.logged(kind)._asdict() for kind in ("video", "comment")}
    predictions = predict(logged, targets["control"], targets["treatment"], n_users=log.config.world.n_users,
                          n_days=len(log.views), preview=log.config.behaviour.comment_preview, metrics=metrics,
                          estimator=estimator, alpha=alpha, response_model=section_model(log), bootstrap=bootstrap)
    result = {
        "logs": str(logs), "logging_policy": log.manifest.get("policy"), "alpha": alpha, "estimator": estimator,
        "unit": "user-day", "n_units": log.config.world.n_users * len(log.views), "control": control,
        "treatment": treatment, "requests": {kind: len(log.logged(kind).request_id) for kind in logged},
        "metrics": [p.as_dict() for p in predictions], "warnings": [],
    }
    for m in result["metrics"]:
        if "not_identified" in m["flags"]:
            result["warnings"].append(f"{m['name']}: not identified by per-request weights (the logged request stream "
                                      f"is held fixed), so no offline prediction is given")
        if "no_estimate" in m["flags"]:
            result["warnings"].append(f"{m['name']}: no prediction: an arm's estimate is zero (no logged slate matches "
                                      f"its prefixes), so the ratio is undefined; try --estimator cascade-dr or model")
        for arm in ("control", "treatment"):
            a = m[arm]
            if a and "no_support" in a["flags"]:
                result["warnings"].append(f"{m['name']}: the logs give no support to {1 - a['support']:.1%} of the "
                                          f"{arm}'s slates (the logging policy showed its own with probability 1): log "
                                          f"with --temperature T")
            if a and "low_ess" in a["flags"]:
                result["warnings"].append(f"{m['name']}: the {arm}'s weights have a low effective sample size "
                                          f"({a['ess']:.0f}): the prediction is noisy; log with a higher --temperature")
    if detail:
        kinds = {METRICS[m][0]: METRICS[m][1] for m in metrics if METRICS[m] is not None}
        result["detail"] = compare(logged, targets, {kind: [reward] for kind, reward in kinds.items()},
                                   estimator="all", alpha=alpha)
        result["warnings"] += result["detail"].pop("warnings")
    return result


@abtest_app.command("offline")
@handles_input_errors
def abtest_offline(
    logs: Path = typer.Option(..., "--logs", metavar="RUN_DIR", help="A run logged by a stochastic policy (lsvcr simulate --temperature T, or --explore EPS): slates.parquet with propensities."),
    control: str = typer.Option(..., "--control", help=f"Control policy SPEC: {POLICY_SPECS}."),
    treatment: str = typer.Option(..., "--treatment", help="Treatment policy SPEC."),
    metric: list[str] = typer.Option([], "--metric", metavar="NAME", help="A metric of the A/B report, repeatable: comment_watch_time, video_watch_time, sessions, plays, comments_read, comment_likes [default: the first three]."),
    estimator: str = typer.Option(DEFAULT_OFFLINE_ESTIMATOR, "--estimator", help="cascade-ips (default: unbiased for any target; validated best in bench/ope_validation.py) | cascade-dr (the same weights with a reward model) | dm (reward model only) | model, model-dr (the fitted comment-section response model; bootstrap CI) | iips, dr (position-wise; biased where a preview or a cascade links positions)."),
    detail: bool = typer.Option(False, "--detail", help="Also the per-request estimates of each arm against the logging policy (top item and whole slate, every estimator)."),
    bootstrap: int = typer.Option(20, "--bootstrap", metavar="B", help="model / model-dr: the interval from B cluster-bootstrap replicates with the response model refitted (0: normal approximation without the model's error)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Intervals are 1 - alpha (normal approximation, clustered by user)."),
    fmt: str = typer.Option("table", "--format", help="table | json"),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Write here (atomically) instead of stdout."),
) -> None:
    """Predict the A/B before launch: treatment's lift over control per user, from a logging run.

    Both policies are replayed on every logged request; a slate estimator (cascade IPS with the comment
    section's preview as one block) values each request, requests are summed per user-day, and the
    lift comes with its own interval (both arms on the same logs). `--format json` prints a `metrics`
    list shaped like `lsvcr abtest report --format json`, so the two can be compared by a script.

    Example: lsvcr abtest offline --logs runs/explore --control popularity --treatment oracle
    """
    import io
    import json

    from abtest.offline_ab import ESTIMATORS, METRICS
    from abtest.render import write_atomic

    if fmt not in ("table", "json"):
        fail(f"--format {fmt!r}: choose table or json")
    if estimator not in ESTIMATORS:
        fail(f"--estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")
    if not 0.0 < alpha < 1.0:
        fail(f"--alpha must be in (0, 1), got {alpha}")
    for m in metric:
        if m not in METRICS:
            fail(f"--metric {m!r}: choose among {', '.join(METRICS)}")
    if bootstrap < 0:
        fail(f"--bootstrap must be >= 0, got {bootstrap}")
    result = offline_prediction(logs, control, treatment, metric or None, estimator, alpha, detail, bootstrap)
    for warning in result["warnings"]:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if fmt == "json":
        text = json.dumps(result, indent=2, allow_nan=False)
    elif out is not None:
        buffer = Console(file=io.StringIO(), width=160, record=True)
        render_offline(result, buffer)
        text = buffer.export_text().rstrip("\n") + "\n"
    else:
        render_offline(result, console)
        return
    if out is None:
        typer.echo(text)
    else:
        write_atomic(out, text.encode())
        err_console.print(f"wrote {out}", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
