"""The `lsvcr` command line: thin typer commands that parse options, call one package function (or one
pipeline of pipeline.py, which wires the packages together) and render the result. Bad input raises a
package ``InputError`` and exits with code 2 and one line."""
from __future__ import annotations

import contextlib
import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

import atomic
import pipeline
from abtest.errors import InputError as AbtestInputError
from lsvcr.errors import InputError as LsvcrInputError
from simulator.errors import InputError as SimulatorInputError

INPUT_ERRORS = (SimulatorInputError, AbtestInputError, LsvcrInputError, atomic.OutputError)


class OneLineErrors(typer.core.TyperGroup):
    """The app's group: a usage error (unknown option, a value of the wrong type, a missing argument)
    is one line on stderr and exit code 2, like every other bad input, instead of click's framed box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.exceptions.TyperException as e:  # typer's click exceptions: usage errors
            if type(e).__name__ == "NoArgsIsHelpError":  # `lsvcr abtest` alone: its help, as typer does
                e.show()
            else:
                where = e.ctx.command_path if getattr(e, "ctx", None) is not None else "lsvcr"
                say_error(f"{where}: {e.format_message()} (see {where} --help)")
            code = e.exit_code
        except typer.Abort:
            code = 1
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
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

# markup off: user text (paths, column names, metric names) is printed as it is, brackets included
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)


def say_error(message: str) -> None:
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    """Print one clear line and exit with code 2 (bad input)."""
    say_error(message)
    raise typer.Exit(2)


def handles_input_errors(fn):
    """Map a package ``InputError`` (and unreadable paths) to one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except INPUT_ERRORS as e:
            fail(str(e))
        except (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
            fail(f"{e.strerror or type(e).__name__}: {e.filename}")

    return wrapper


OVERWRITE_HELP = "Replace an existing non-empty --out (never one that is, or holds, an input)."


def check_file_output(out: Path, inputs, overwrite: bool, fmt: str) -> None:
    """Refuse an --out file that exists (unless --overwrite) or is an input, before any work; for a
    markdown report also its plot (abtest.render.plot_path)."""
    from abtest.render import plot_path

    for path in [out, plot_path(out)] if fmt == "markdown" else [out]:
        atomic.check_output(path, inputs=inputs, overwrite=overwrite)


class TableOrJson(str, Enum):
    """--format of the commands that print a table or JSON (typer rejects any other value: exit 2)."""

    table = "table"
    json = "json"


class ReportFormat(str, Enum):
    """--format of `lsvcr abtest report`: abtest.render.FORMATS."""

    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"


def print_warnings(warnings) -> None:
    for warning in warnings:
        err_console.print(Text.assemble(("warning:", "yellow"), " ", str(warning)), highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_bar(label: str, total: float, quiet: bool = False):
    """A ``pipeline.Progress`` on stderr: ``with progress_bar("A/B", days) as update: ... update(day)``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(label), BarColumn(), TextColumn("day {task.completed:.1f}/{task.total:g}"),
                  TimeElapsedColumn(), console=err_console, disable=quiet, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda days: bar.update(task, completed=days)


# --------------------------------------------------------------------------------------------
# lsvcr simulate
# --------------------------------------------------------------------------------------------
RAY_HELP = ("Run the users as Ray shards (one actor per shard; each day's deltas exchanged through Ray). "
            "Without --ray-address: a local Ray with this machine's cores. The run directory is the one-process run's.")
RAY_ADDRESS_HELP = "Join this Ray cluster: auto (the running cluster) or HOST:PORT. Implies --ray."
RAY_SHARDS_HELP = "Shard actors on Ray (default: the cluster's CPUs). Implies --ray."


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
        mark = "–" if ok is None else (Text("yes", "green") if ok else Text("no", "red"))
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
    users: Optional[int] = typer.Option(None, "--users", help="Simulated users (default 2000)."),
    videos: Optional[int] = typer.Option(None, "--videos", help="Videos in the catalogue (default 1000)."),
    days: Optional[int] = typer.Option(None, "--days", help="Simulated days (default 2)."),
    policy: str = typer.Option("popularity", "--policy", help="random | popularity | oracle (ranks by the latent truth: the ceiling)."),
    explore: Optional[float] = typer.Option(None, "--explore", metavar="EPS", help="ε-exploration: with probability EPS show a uniformly random slate (logs exact propensities)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", metavar="T", help="Sample slates from softmax(score/T) (Plackett–Luce; logs exact propensities)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the world and every user's random streams (default 0)."),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE.toml", help="TOML with world, behaviour and run tables overriding any field of simulator.config."),
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
    from simulator.run import parse_shard, simulate

    if policy not in ("random", "popularity", "oracle"):
        fail(f"unknown policy {policy!r}: choose one of random, popularity, oracle")
    cfg = pipeline.simulation_config(config, n_users=users, n_videos=videos, days=days, seed=seed)
    shards, on_ray = parse_shard(shard), ray_options(ray, ray_address, ray_shards)
    with progress_bar("simulating", cfg.days, quiet) as progress:
        summary = simulate(cfg, out, policy, explore, temperature, shards, progress=progress, on_ray=on_ray)
    render_simulation_summary(summary)
    console.print(f"wrote {out}", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------------------------
# lsvcr demo (pipeline.run_demo)
# --------------------------------------------------------------------------------------------
class TerminalDisplay:
    """``pipeline.Display`` on the terminal: a rule per stage, each stage's result through its render_*."""

    console = console  # the trainers' progress lines

    def stage(self, title: str) -> None:
        console.rule(Text(title, "bold"))

    def progress(self, label: str, total: float):
        return progress_bar(label, total)

    def status(self, message: str):
        return err_console.status(message)

    def simulation(self, summary: dict) -> None:
        render_simulation_summary(summary)

    def dataset(self, ds, path: Path) -> None:
        render_dataset_stats(ds, path)

    def metrics(self, result: dict) -> None:
        render_metrics(result)

    def offline(self, result: dict) -> None:
        render_offline(result, console)

    def experiment(self, summary: dict) -> None:
        console.print(f"{summary['users']} users, {summary['events']:,} events in {summary['wall_s']:.0f} s")

    def report(self, report) -> None:
        from abtest.render import emit

        print_warnings(report.warnings)
        emit(report, "table", None, console)


def render_demo_summary(result: pipeline.DemoResult) -> None:
    console.rule(Text("summary", "bold"))
    console.print("\n".join([*result.summary, "", "| stage | seconds |", "|---|---|"]
                            + [f"| {k} | {v:.0f} |" for k, v in result.timings.items()]), highlight=False)
    console.print(f"every artifact is in {result.out}")


@app.command()
@handles_input_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Directory for every artifact of the demo."),
    quick: bool = typer.Option(False, "--quick", help="A small world for a fast look (about 3 minutes)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the world, the users, the training and the offline bootstrap."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the artifacts of an earlier demo in --out (make demo does)."),
) -> None:
    """The whole pipeline on the embedded default world: simulate under an exploring logging policy,
    build the dataset, train SASRec (control) and LSVCR (treatment), evaluate offline, compare the arms
    off-policy from the logs, run an online A/B with a pre-period, report, and call it:
    ship / don't ship / inconclusive."""
    render_demo_summary(pipeline.run_demo(out, quick, seed, TerminalDisplay(), overwrite))


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
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Build the dataset (photo.json, comment.json, rec.*.json, comm_rank.*.json, id lists) from a
    simulation's event log, with leave-last-out splits, and print its statistics.

    Example: lsvcr data build runs/sim --out runs/data
    """
    from lsvcr.data.build import BuildConfig, build_and_write

    render_dataset_stats(build_and_write(run_dir, out, BuildConfig(long_play_fraction, long_read_s, history_len), overwrite), out)
    console.print(f"wrote {out}", highlight=False, soft_wrap=True)


@data_app.command("import-recbole")
@handles_input_errors
def data_import_recbole(
    inter: Path = typer.Argument(..., help="RecBole NAME.inter file, or a directory with NAME.inter and NAME.item."),
    out: Path = typer.Option(..., "--out", help="Dataset directory to write."),
    item: Optional[Path] = typer.Option(None, "--item", help="The .item file (default: beside the .inter)."),
    title_field: Optional[str] = typer.Option(None, "--title-field", help="Item field holding the title (default: the first field whose name contains 'title')."),
    history_len: int = typer.Option(50, "--history-len", help="Most recent history entries kept per example."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Import RecBole atomic files as a video-only dataset (leave-one-out by timestamp).

    Example: lsvcr data import-recbole ml-100k/ --out runs/ml100k
    """
    from lsvcr.data.recbole import import_and_write

    render_dataset_stats(import_and_write(inter, out, item, title_field, history_len, overwrite), out)
    console.print(f"wrote {out}", highlight=False, soft_wrap=True)


@data_app.command("import-obd")
@handles_input_errors
def data_import_obd(
    folder: Path = typer.Argument(..., help="One Open Bandit Dataset folder, POLICY/CAMPAIGN (e.g. obd/random/all: CAMPAIGN.csv and item_context.csv)."),
    out: Path = typer.Option(..., "--out", help="Feedback directory to write (the logged-feedback format), with policies/random.parquet and policies/bts.parquet."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="BTS's production prior, obp's prior_bts.yaml (default: the one of the obp package the folder is in)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Import an Open Bandit Dataset folder (ZOZOTOWN, logged by the random or the BTS policy) as logged
    feedback for `lsvcr abtest offline`, with both policies as table: targets.

    Example: lsvcr data import-obd .venv/obp-sdist/obp-0.5.7/obp/dataset/obd/random/all --out runs/obd-random-all
    """
    from abtest.offline.obd import import_obd

    r = import_obd(folder, out, prior=prior, overwrite=overwrite)
    console.print(f"{r.rows:,} rows, {r.clicks} clicks (click rate {r.click_rate:.3%}), campaign {r.campaign}, "
                  f"{r.n_items} items, logged by {r.logging_policy}; wrote {r.out}; policy tables: "
                  + ", ".join(f"table:{p}" for p in r.tables.values()), highlight=False, soft_wrap=True)


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


def render_stage1(stage1) -> None:
    """Stage 1's line, printed when it ends (under --ddp nothing: its processes print their own)."""
    rep = stage1.report
    if rep is None:
        return
    last = rep["losses"][-1] if rep["losses"] else {}
    console.print(f"stage 1: {rep['steps']} steps, {rep['samples_per_s']:.2f} samples/s, last loss "
                  + " ".join(f"{k} {v:.4f}" for k, v in last.items()) + f"; wrote {stage1.aligned}")


def render_training(result) -> None:
    """Stage 2's summary and test metrics (``lsvcr.train.TrainResult``; nothing more with --stage align)."""
    if result.metrics is None:
        return
    tr = result.metrics["train"]
    best = ", ".join(f"{t} {r['best_epoch']}" for t, r in tr["tasks"].items()) if tr.get("tasks") else tr["best_epoch"]
    console.print(f"best epoch {best} (val NDCG@5 {tr['best_val_ndcg5']:.4f}), "
                  f"{tr['train_seconds']:.1f} s training, {tr['targets_per_s']:,.0f} targets/s")
    render_metrics(result.metrics["test_sampled100"])
    console.print(f"wrote {result.out}", highlight=False, soft_wrap=True)


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
    max_prompt_tokens: int = typer.Option(4096, "--max-prompt-tokens", help="Stage 1: prompt + response tokens (official: 3840 + 256), clamped to the LLM's context (MiniLM: 512); oldest history lines are dropped first, never the response."),
    max_response_tokens: Optional[int] = typer.Option(None, "--max-response-tokens", help="Stage 1, decoder LLMs: the response's tokens (default: the official 256, at most half of --max-prompt-tokens)."),
    bf16_autocast: bool = typer.Option(False, "--bf16-autocast", help="Stage 1: run the LLM's matmuls in bfloat16 (faster where the CPU has avx512_bf16 or AMX; another rounding, so off by default; bench/align_speed.py)."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="Stage 1: checkpoint every N steps (0: never)."),
    resume: bool = typer.Option(False, "--resume", help="Stage 1: continue an interrupted run from its checkpoint (same options)."),
    ddp: int = typer.Option(0, "--ddp", help="Stage 1 on N local processes (torchrun; gloo on CPU, nccl on GPUs)."),
    selection: str = typer.Option("per_task", "--selection", help="--task both: per_task (a model per task, each stopped at its own best val NDCG@5, as the official code) | joint (one model on both tasks, stopped on the mean)."),
    epochs: int = typer.Option(50, "--epochs", help="At most this many epochs (early stopping on val NDCG@5, patience 5)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per batch (default 512 for lsvcr; user windows, default 64, for sasrec)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads (on a shared box 1 beats 2; stage 1 on an idle 2-core machine: 2, 1.6x faster)."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Read the original code's pickled id lists (pickle can run code)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP + " With --stage all, also the aligned dir."),
) -> None:
    """Train a recommender: LSVCR (stage 1 alignment with an LLM under LoRA, stage 2 fine-tuning) or
    the SASRec control.

    Example: lsvcr train --data runs/data --out runs/model --stage all --align-steps 200
    """
    from lsvcr.train import TrainRequest, run_training

    request = TrainRequest(
        data=data, out=out, model=model, task=task, stage=stage, no_align=no_align, init=init, aligned_out=aligned_out,
        llm=llm, llm_kind=llm_kind, trust_remote_code=trust_remote_code, dtype=dtype, prompt_templates=prompt_templates,
        align_batch_size=align_batch_size, align_lr=align_lr, align_epochs=align_epochs, align_steps=align_steps,
        max_prompt_tokens=max_prompt_tokens, max_response_tokens=max_response_tokens, bf16_autocast=bf16_autocast, checkpoint_every=checkpoint_every, resume=resume, ddp=ddp,
        selection=selection, epochs=epochs, batch_size=batch_size, device=device, seed=seed, threads=threads,
        allow_pickle=allow_pickle, quiet=quiet, overwrite=overwrite)
    render_training(run_training(request, err_console, render_stage1))


@app.command()
@handles_input_errors
def evaluate(
    model: str = typer.Option(..., "--model", help="A model directory, or 'popularity' (the baseline)."),
    data: Path = typer.Option(..., "--data", help="Dataset directory."),
    protocol: str = typer.Option("sampled100", "--protocol", help="sampled100 (paper) | full (every video / every comment of the video) | ips (exposure-debiased: inverse-propensity-weighted metrics on the logged comment slates; needs data built from a run logged with --temperature or --explore)."),
    split: str = typer.Option("test", "--split", help="train | val | test"),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format"),
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

    if model != "popularity" and not Path(model).is_dir():
        fail(f"--model {model!r} is neither a model directory nor 'popularity'")
    result = evaluate_model(model, data, EvalConfig(protocol=protocol, split=split, seed=seed), allow_pickle)
    if fmt is TableOrJson.json:
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
    fmt: ReportFormat = typer.Option(ReportFormat.table, "--format", help="markdown and html add a forest plot."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Write here (atomically) instead of stdout."),
    engine: str = typer.Option("duckdb", "--engine", help="Where the metrics' SQL runs: duckdb (embedded) | spark (PySpark 4; only aggregates leave the cluster)."),
    spark_master: Optional[str] = typer.Option(None, "--spark-master", metavar="URL", help="Spark master, e.g. local[4] or spark://host:7077 (default: local[*])."),
    table: Optional[str] = typer.Option(None, "--table", metavar="NAME", help="A per-unit table the engine knows by name (Spark: catalog or Hive table) instead of INPUT."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file (and its plot)."),
) -> None:
    """Analyse an experiment: SRM, lifts with CIs, CUPED, ratio metrics, corrections.

    Example: lsvcr abtest report runs/ab --format markdown --out report.md
    On Spark: lsvcr abtest report runs/ab --engine spark --spark-master local[4]
    """
    from abtest.render import emit
    from abtest.report import ReportConfig, build_report
    from abtest.spec import parse_covariate, parse_ratio, parse_split

    config = ReportConfig(
        unit_col=unit_col, variant_col=variant_col, control=control, metrics=tuple(metric),
        ratios=tuple(parse_ratio(r) for r in ratio), covariates=tuple(parse_covariate(c) for c in covariate),
        alpha=alpha, correction=correction, scope=scope, sequential=sequential, split=parse_split(split),
        srm_alpha=srm_alpha, winsorize=winsorize, mann_whitney=mann_whitney, engine=engine,
        spark_master=spark_master)
    if out is not None:
        check_file_output(out, [input], overwrite, fmt.value)
    report = build_report(input, config, table=table)
    print_warnings(report.warnings)
    for path in emit(report, fmt.value, out, console):
        err_console.print(f"wrote {path}", highlight=False, soft_wrap=True)


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
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format"),
) -> None:
    """Units per arm for a relative MDE, or the MDE for a number of units (normal approximation).

    Example: lsvcr abtest power --mean 30 --sd 60 --rho 0.7 --mde 0.02
    """
    import json

    from rich.table import Table

    from abtest.power import plan

    result = plan(mean, sd, rho=rho, mde_rel=mde, n_per_arm=n, alpha=alpha, power=power)
    if fmt is TableOrJson.json:
        typer.echo(json.dumps(result._asdict(), indent=2))
        return
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
@abtest_app.command("run")
@handles_input_errors
def abtest_run(
    world: Path = typer.Option(..., "--world", help="A simulation run directory: its world (videos, comments, users) hosts the experiment."),
    control: str = typer.Option(..., "--control", help=f"Control policy SPEC: {pipeline.POLICY_SPECS}."),
    treatment: str = typer.Option(..., "--treatment", help="Treatment policy SPEC (ignored with --aa)."),
    out: Path = typer.Option(..., "--out", help="A/B run directory to create."),
    users: Optional[int] = typer.Option(None, "--users", help="Users in the experiment (default: the world's)."),
    pre_days: int = typer.Option(1, "--pre-days", help="Days with everyone on control before the split (CUPED covariates)."),
    days: int = typer.Option(1, "--days", help="Experiment days after the pre-period."),
    split: float = typer.Option(0.5, "--split", help="Share of users in treatment."),
    salt: str = typer.Option("lsvcr-ab", "--salt", help="Salt of the hash assignment (a new salt reshuffles users)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the users' behavioural noise (default: the world's seed + 1)."),
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
    summary = pipeline.run_ab(world, out, control, treatment, users=users, pre_days=pre_days, days=days, split=split,
                              salt=salt, seed=seed, aa=aa, on_ray=ray_options(ray, ray_address, ray_shards),
                              progress=functools.partial(progress_bar, quiet=quiet))
    console.print(f"{summary['users']} users, {summary['events']:,} events in {summary['wall_s']:.1f} s; "
                  f"wrote {out} — next: lsvcr abtest report {out}")


# --------------------------------------------------------------------------------------------
# lsvcr abtest offline (off-policy evaluation from logged feedback, before launch)
# --------------------------------------------------------------------------------------------
def _offline_help() -> tuple[str, str]:
    from abtest.offline.estimators import help_text
    from abtest.offline.prediction import METRICS

    return help_text(), ", ".join(METRICS)


ESTIMATOR_HELP, OFFLINE_METRIC_NAMES = _offline_help()

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
    # whole names and numbers at any width: the metric never wraps, each CI sits under its lift, the
    # arms' figures and the flags stack one per line
    table.add_column("metric", no_wrap=True)
    for col in ("control\ntreatment", f"lift\n[{level}]", "p", "ESS\nc / t", "support\nc / t"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("flags", no_wrap=True)
    for m in result["metrics"]:
        c, t = m["control"], m["treatment"]
        ci = m["rel_ci"]
        lift = "–" if m["rel_effect"] is None else f"{pct(m['rel_effect'])}\n[{pct(ci[0])}, {pct(ci[1])}]"
        table.add_row(m["name"], f"{num(m['control_mean'])}\n{num(m['treatment_mean'])}", lift,
                      "–" if m["p_value"] is None else f"{m['p_value']:.3g}",
                      "–" if c is None else f"{num(c['ess'])}\n{num(t['ess'])}",
                      "–" if c is None else f"{c['support']:.3f}\n{t['support']:.3f}", "\n".join(m["flags"]))
    from rich.measure import Measurement

    if Measurement.get(target, target.options.update(max_width=10_000), table).maximum <= target.width:
        target.print(table)
    else:  # too narrow for the table: one block per metric, every figure whole
        target.print(table.title, highlight=False)
        for m in result["metrics"]:
            c, t = m["control"], m["treatment"]
            ci = m["rel_ci"]
            target.print(f"\n{m['name']} — treatment vs control", highlight=False)
            target.print(f"  per {result['unit']}  control {num(m['control_mean'])} · treatment {num(m['treatment_mean'])}",
                         highlight=False)
            if m["rel_effect"] is not None:
                p = "" if m["p_value"] is None else f"  p {m['p_value']:.3g}"
                target.print(f"  lift  {pct(m['rel_effect'])}  [{pct(ci[0])}, {pct(ci[1])}]{p}", highlight=False)
            if c is not None:
                target.print(f"  ESS  control {num(c['ess'])} · treatment {num(t['ess'])};  support {c['support']:.3f} / "
                             f"{t['support']:.3f}", highlight=False)
            if m["flags"]:
                target.print(f"  flags  {', '.join(m['flags'])}", highlight=False)
    sessions = next((m["sessions"] for m in result["metrics"] if m.get("sessions")), None)
    if sessions:
        model = sessions["model"]
        target.print(f"\nsession model (fitted on the logs; {sessions['replicates']} bootstrap refits): an impression costs "
                     f"1 - {model['beta']:.2f} x watch fraction - {model['gamma']:.3f} x comment read s of a budget "
                     f"LogNormal({model['mu']:.2f}, {model['sigma']:.2f}); mean return gap x exp(-{model['w']:.2f} x satisfaction)",
                     highlight=False)
        log = sessions["logging"]
        for arm in ("control", "treatment"):
            a = sessions[arm]
            target.print(f"  {arm}: {a['length']:.1f} impressions per session (logging {log['length']:.1f}), "
                         f"{a['sessions_per_active_day']:.2f} sessions per active day (logging "
                         f"{log['sessions_per_active_day']:.2f}): x{a['impression_multiplier']:.2f} impressions",
                         highlight=False)
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


@abtest_app.command("offline")
@handles_input_errors
def abtest_offline(
    logs: Path = typer.Option(..., "--logs", metavar="LOGS", help="A feedback log (README 'Bringing your own logs'), or a simulation run logged with --temperature T or --explore EPS (its feedback/)."),
    control: str = typer.Option(..., "--control", help=f"Control policy SPEC: {pipeline.OFFLINE_POLICY_SPECS}."),
    treatment: str = typer.Option(..., "--treatment", help="Treatment policy SPEC."),
    metric: list[str] = typer.Option([], "--metric", metavar="NAME", help=f"Repeatable: a metric of the A/B report ({OFFLINE_METRIC_NAMES}), or a reward column of the logs (feed.NAME / comments.NAME where both surfaces log it). Default: comment_watch_time, video_watch_time and sessions where the logs carry them, else every reward column."),
    estimator: str = typer.Option(pipeline.DEFAULT_OFFLINE_ESTIMATOR, "--estimator", help=f"How each logged request is valued under a policy: {ESTIMATOR_HELP}."),
    detail: bool = typer.Option(False, "--detail", help="Also the per-request estimates of each arm against the logging policy (top item and whole slate, every estimator)."),
    bootstrap: int = typer.Option(pipeline.DEFAULT_BOOTSTRAP, "--bootstrap", metavar="B", help="The interval from B user-bootstrap replicates, the session model refitted on each (with --hold-sessions: model / model-dr / model-pdr only, the response model refitted; model-pcm's comment factor, weights only, keeps its normal-approximation interval; 0: normal approximation, with --hold-sessions only; else at least 2)."),
    hold_sessions: bool = typer.Option(False, "--hold-sessions", help="Hold the logged sessions fixed (the per-request quantity: no effect on session length or returns; sessions not identified) instead of the session model."),
    alpha: float = typer.Option(0.05, "--alpha", help="Intervals are 1 - alpha (normal approximation, clustered by user)."),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format"),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Write here (atomically) instead of stdout."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Predict the A/B before launch: treatment's lift over control per unit, from logged feedback.

    Both policies are served every logged request as it was logged (a team's own logs in the feedback
    format, or a simulation's feedback/); an estimator values each request and requests are summed per
    user-day (per request in logs without users). By default the user-response models fitted on the
    logs, corrected by position-wise importance weights, value each request, and a session model
    fitted on the same logs scales each policy's value by how much longer and more often it keeps
    users. The lift comes with its own interval (both arms on the same logs). `--format json` prints a
    `metrics` list shaped like `lsvcr abtest report --format json`.

    Example: lsvcr abtest offline --logs runs/explore --control popularity --treatment oracle

    Your own logs: lsvcr abtest offline --logs LOGS --control logged --treatment table:FILE --metric click --estimator snips
    """
    import io
    import json

    if out is not None:
        check_file_output(out, [logs], overwrite, fmt.value)
    prediction = pipeline.offline_prediction(logs, control, treatment, metric or None, estimator, alpha, detail, bootstrap,
                                             status=err_console.status, hold_sessions=hold_sessions)
    print_warnings(prediction.warnings)
    result = prediction.as_dict()
    if fmt is TableOrJson.json:
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
        atomic.write_text(out, text)
        err_console.print(f"wrote {out}", highlight=False, soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
