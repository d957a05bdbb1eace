"""The wiring of lsvcr, simulator and abtest: the pipelines the `lsvcr` commands run (cli.py parses
options, calls one function here and renders what it returns; nothing here imports typer).

* policies   ``resolve_policy`` / ``check_policy_spec``: a SPEC (built-in, NAME@T, KIND:MODEL_DIR) → a
             simulator policy (trained models through ``lsvcr.policy``)
* A/B run    ``run_ab``: a pre-period and an experiment on a simulated world (``simulator.experiment``)
* offline    ``offline_prediction`` (→ ``OfflinePrediction``): a feedback log read once
             (``abtest.offline.feedback``), both policies served its requests (``offline_targets``:
             ``simulator.counterfactual``, or ``abtest.offline.policies`` for table: files), the A/B
             predicted off-policy (``abtest.offline.prediction``), with the user-response models of
             ``response_models`` and the session model of ``session_fits``; ``offline_vs_online`` sets it
             beside the online A/B
* demo       ``run_demo`` (→ ``DemoResult``): simulate → dataset → train → evaluate → offline → A/B →
             report → ``demo_summary``, showing each stage through a ``Display``

Bad input raises the packages' ``InputError`` (a ``ValueError``), which cli.py turns into one line and
exit code 2.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional, Protocol

from abtest.errors import InputError as AbtestInputError
from abtest.offline.prediction import DEFAULT_ESTIMATOR as DEFAULT_OFFLINE_ESTIMATOR

DEFAULT_BOOTSTRAP = 30  # user-bootstrap replicates of the offline prediction (the session model refitted on each)
from simulator.errors import InputError as SimulatorInputError

Progress = Callable[[str, float], ContextManager[Callable[[float], None]]]
"""A progress-bar factory: ``with progress("A/B", days) as update: ... update(day) ...``."""


@contextlib.contextmanager
def no_progress(label: str, total: float):
    """The ``Progress`` that shows nothing."""
    yield lambda done: None


def simulation_config(config_file: Optional[Path] = None, **overrides):
    """``SimConfig`` from a TOML file (or the defaults) with the given fields replaced (None: keep)."""
    from simulator import SimConfig

    base = SimConfig.from_toml(config_file) if config_file else SimConfig()
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})


# --------------------------------------------------------------------------------------------
# policies
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
            raise SimulatorInputError(f"policy spec {spec!r}: the temperature after @ must be a number") from None
        return make_policy(name, world, comments, config, temperature=temperature)
    if spec in BUILTIN_POLICIES:
        return make_policy(spec, world, comments, config)
    kind, sep, path = spec.partition(":")
    if sep and kind in ("sasrec", "lsvcr") and path:
        from lsvcr.policy import load_policy

        return load_policy(kind, Path(path))
    raise SimulatorInputError(f"unknown policy spec {spec!r}: use {POLICY_SPECS}")


def check_policy_spec(spec: str) -> None:
    """Raise ``InputError`` unless ``spec`` names a policy ``resolve_policy`` can build: checked before a
    Ray run, whose workers build the policies."""
    from simulator.run import BUILTIN_POLICIES

    name, at, temp = spec.rpartition("@")
    kind, sep, path = spec.partition(":")
    if at and name in ("popularity", "oracle"):
        try:
            float(temp)
        except ValueError:
            raise SimulatorInputError(f"policy spec {spec!r}: the temperature after @ must be a number") from None
    elif sep and kind in ("sasrec", "lsvcr") and path:
        if not Path(path).is_dir():
            raise SimulatorInputError(f"policy spec {spec!r}: no model directory {path}")
    elif spec not in BUILTIN_POLICIES:
        raise SimulatorInputError(f"unknown policy spec {spec!r}: use {POLICY_SPECS}")


def policy_factory(spec: str):
    """The policy factory ``run_experiment`` calls per shard: ``resolve_policy(spec, ...)``."""
    return lambda w, comments, config: resolve_policy(spec, w, comments, config)


# --------------------------------------------------------------------------------------------
# A/B run on simulated users
# --------------------------------------------------------------------------------------------
def run_ab(world: Path, out: Path, control: str, treatment: str, *, users: Optional[int] = None, pre_days: int = 1,
           days: int = 1, split: float = 0.5, salt: str = "lsvcr-ab", seed: Optional[int] = None, aa: bool = False,
           on_ray=None, progress: Progress = no_progress) -> dict:
    """A pre-period and an A/B experiment on ``world``'s users; returns ``run_experiment``'s summary."""
    from simulator.experiment import run_experiment, world_config

    import atomic

    if pre_days < 0 or days < 1:
        raise SimulatorInputError("--pre-days must be >= 0 and --days >= 1")
    models = [spec.partition(":")[2] for spec in (control, treatment) if spec.partition(":")[2]]
    atomic.check_output(out, inputs=[world, *models], overwrite=None)
    if on_ray is not None:  # a bad SPEC fails here, not inside a Ray worker
        for spec in (control,) if aa else (control, treatment):
            check_policy_spec(spec)
    base = world_config(world)
    cfg = base.replace(
        days=pre_days + days, pre_days=pre_days, log_slates=False,
        noise_seed=base.seed + 1 if seed is None else seed,
        **({"n_users": users} if users is not None else {}),
    )
    with progress("A/B", cfg.days) as update:
        return run_experiment(cfg, out, policy_factory(control), policy_factory(treatment), (control, treatment),
                              split=split, salt=salt, aa=aa, world_dir=world, progress=update, on_ray=on_ray)


# --------------------------------------------------------------------------------------------
# the offline comparison (off-policy, from a logging run, before launch)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfflinePrediction:
    """``offline_prediction``'s result; ``as_dict()`` is what `lsvcr abtest offline --format json` prints
    (``metrics`` shaped like the A/B report's; ``detail`` only when asked for)."""

    logs: str
    logging_policy: Optional[str]
    alpha: float
    estimator: str
    unit: str
    n_units: int
    control: str
    treatment: str
    requests: dict
    metrics: list  # OfflineMetric.as_dict() per metric
    warnings: list
    detail: Optional[dict] = None

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.detail is None:
            del d["detail"]
        return d


def check_offline_options(estimator: str, alpha: float, bootstrap: int, hold_sessions: bool = False) -> None:
    """Raise ``InputError`` for an option ``offline_prediction`` cannot use (checked before the logs are read)."""
    from abtest.offline.estimators import ESTIMATORS

    if estimator not in ESTIMATORS:
        raise AbtestInputError(f"--estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")
    if not 0.0 < alpha < 1.0:
        raise AbtestInputError(f"--alpha must be in (0, 1), got {alpha}")
    if bootstrap < 0:
        raise AbtestInputError(f"--bootstrap must be >= 0, got {bootstrap}")
    if bootstrap == 1:
        raise AbtestInputError("--bootstrap 1: a percentile interval needs at least 2 replicates (0: normal approximation)")
    if bootstrap == 0 and not hold_sessions:
        raise AbtestInputError("--bootstrap 0 (normal approximation) needs --hold-sessions: the session model's "
                               "intervals are a user bootstrap (give at least 2 replicates; default 30)")


KINDS = {"feed": "video", "comments": "comment"}  # feedback surfaces -> the prediction's kinds of request


def logged_requests(fb) -> dict:
    """A feedback log's requests as ``prediction.predict`` reads them (by kind of request), with the video
    reward ``frac`` (watch fraction: ``watch_s`` over the video's duration) where the log has durations."""
    import numpy as np

    out = {}
    for name, s in fb.surfaces.items():
        shown = s.items >= 0
        # ``user_id`` clusters the intervals and folds the cross-fitted reward model: without users, each request
        cluster = s.user if fb.has_users else np.arange(len(s), dtype=np.int64)
        out[KINDS[name]] = {"kind": KINDS[name], "request_id": s.request_id, "user_id": cluster, "day": s.day,
                            "items": s.items, "logging_marginal": s.marginal,
                            "logging_prefix": np.where(shown, s.prefix, 1.0), "rewards": dict(s.rewards)}
    feed = fb.surfaces.get("feed")
    if feed is not None and "watch_s" in feed.rewards and "feed" in fb.items:
        duration = _durations(fb)
        out["video"]["rewards"]["frac"] = np.where(feed.items >= 0, feed.rewards["watch_s"] / duration[np.maximum(feed.items, 0)], 0.0)
    return out


def _durations(fb):
    """[max video id + 1] each video's duration (items.parquet; NaN unknown)."""
    import numpy as np

    videos = fb.items["feed"]
    top = max(int(videos.ids.max(initial=0)), int(fb.surfaces["feed"].cand_flat.max(initial=0)))
    duration = np.full(top + 1, np.nan)
    duration[videos.ids] = videos.duration_s
    return duration


def response_models(fb):
    """The user-response models fitted on a feedback log, as ``prediction.predict`` calls them: the
    feed model for video rewards and the comment-section model for comment rewards
    (abtest.offline.response_model), each fitted on first use; None where the log lacks what a model
    reads (titles and comment text in items.parquet, the outcomes it models)."""
    import numpy as np

    from abtest.offline import response_model as rm

    feed, com = fb.surfaces.get("feed"), fb.surfaces.get("comments")
    videos, comments = fb.items.get("feed"), fb.items.get("comments")
    contexts = {}  # built on first use, once

    def section():
        rows = comments.rows(com.items)
        subject, form = rm.comment_text_features(list(comments.text), list(videos.text))
        likes = rm.candidate_matrix(com.cand_off, comments.rows(com.cand_flat), com.features["popularity"],
                                    len(comments.ids))
        return rm.SectionData(com.user, com.day, rows, com.rewards["impressions"] > 0, com.rewards["reads"] > 0,
                              com.rewards["read_s"], subject, form,
                              np.array([t.count(" ") + 1 for t in comments.text]), likes)

    def feed_data():
        items = videos.rows(feed.items)
        duration = videos.duration_s
        frac = np.where(items >= 0, feed.rewards["watch_s"] / duration[np.maximum(items, 0)], 0.0)
        pop = rm.candidate_matrix(feed.cand_off, videos.rows(feed.cand_flat), feed.features["popularity"], len(videos.ids))
        return rm.FeedData(feed.user, feed.day, items, feed.rewards["impressions"] > 0, frac,
                           feed.rewards["comment_read_s"], rm.bag_of_words(list(videos.text)),
                           np.asarray(duration, np.float64), pop)

    def has(s, names):
        return s is not None and all(n in s.rewards for n in names) and "popularity" in s.features

    def predictions(kind: str, reward: str, slates, subset=None):
        if kind == "video" and reward in rm.VIDEO_OUTPUTS and videos is not None and \
                has(feed, ("impressions", "plays", "watch_s", "comment_read_s")):
            if "video" not in contexts:
                contexts["video"] = rm.FeedContext(feed_data())
            ctx = contexts["video"]
            if subset is not None:
                model = rm.fit_feed(ctx.d, ctx, rows=subset)
            else:  # one fit serves every video reward
                if "feed_model" not in contexts:
                    contexts["feed_model"] = rm.fit_feed(ctx.d, ctx)
                model = contexts["feed_model"]
            return [rm.predict_feed(model, ctx, videos.rows(np.asarray(s)), reward) for s in slates]
        if kind != "comment" or reward not in rm.OUTPUTS or comments is None or videos is None or \
                not has(com, ("impressions", "reads", "read_s")):
            return None
        if "comment" not in contexts:
            contexts["comment"] = rm.Context(section())
        ctx = contexts["comment"]
        return rm.fit_predict(ctx.d, fb.meta.get("comment_preview", 1), [comments.rows(s) for s in slates], reward,
                              users_subset=subset, ctx=ctx)

    return predictions


def offline_metrics(metrics, logged) -> list[str]:
    """The metrics to predict: those named (catalogue names or the logs' reward columns, checked), else
    the A/B report's headline metrics where the logs carry them, else every reward column of the logs."""
    from abtest.offline.prediction import DEFAULT_METRICS, resolve_metric

    if metrics:
        for m in metrics:
            resolve_metric(m, logged)
        return list(metrics)
    try:
        for m in DEFAULT_METRICS:
            resolve_metric(m, logged)
        return list(DEFAULT_METRICS)
    except AbtestInputError:
        surface = {"video": "feed", "comment": "comments"}
        both = set.intersection(*(set(lg["rewards"]) for lg in logged.values())) if len(logged) > 1 else set()
        return sorted(f"{surface[kind]}.{r}" if r in both else r for kind, lg in logged.items() for r in lg["rewards"])


def offline_units(fb):
    """How the log's requests sum into units (``prediction.Units``)."""
    from abtest.offline.prediction import Units

    return Units(fb.n_users, fb.n_days, {KINDS[n]: len(s) for n, s in fb.surfaces.items()})


def session_fits(fb, replicates: int, seed: int = 0):
    """The session model (abtest.offline.sessions) fitted on a feedback log, with its bootstrap refits."""
    from abtest.offline import sessions

    return sessions.fit_with_bootstrap(sessions.from_feedback(fb), fb.n_users, replicates, seed)


def offline_targets(fb, requests, spec: str, marginals: bool) -> dict:
    """A policy SPEC on every logged request of ``fb``: {kind: {items, marginal, prefix, sampled}}.

    ``logged`` is the logging policy itself (its own probabilities); ``table:FILE`` a target's own
    probabilities of each item at each position (abtest.offline.policies); built-ins, ``scores:FILE``,
    ``sasrec:``/``lsvcr:`` model dirs and the simulator-only ``oracle`` run through
    ``simulator.counterfactual`` on the log's requests and histories."""
    import numpy as np

    from abtest.offline import policies
    from simulator.counterfactual import LoggedRequests, serve

    if spec == "logged":
        return {KINDS[n]: {"items": s.items, "marginal": s.marginal, "prefix": np.where(s.items >= 0, s.prefix, 1.0),
                           "sampled": np.zeros(len(s), bool)} for n, s in fb.surfaces.items()}
    kind, sep, path = spec.partition(":")
    if sep and kind == "table":
        return {KINDS[n]: t for n, t in policies.table_targets(fb, Path(path)).items()}
    policy, features = offline_policy(spec, fb)
    if features:
        requests = LoggedRequests(fb, features)
    targets = serve(requests, policy, seed=int(fb.meta.get("seed", 0)), marginals=marginals)
    return {KINDS[n]: t._asdict() for n, t in targets.items()}


def offline_policy(spec: str, fb):
    """(a simulator policy, extra logged features {surface: {name: values}}) of a SPEC on a feedback log."""
    from simulator.explore import Softmax
    from simulator.policy import FeaturePolicy, PopularityPolicy, RandomPolicy

    name, at, temp = spec.rpartition("@")
    base = name if at else spec
    temperature = None
    if at:
        try:
            temperature = float(temp)
        except ValueError:
            raise SimulatorInputError(f"policy spec {spec!r}: the temperature after @ must be a number") from None
    features = {}
    if base == "random" and not at:
        return RandomPolicy(), features
    kind, sep, path = base.partition(":")
    if sep and kind == "scores" and path:
        from abtest.offline import policies

        features = policies.score_features(fb, Path(path))
        policy = FeaturePolicy("score", f"scores:{Path(path).name}")
    elif base == "popularity":
        if any("popularity" not in s.features for s in fb.surfaces.values()):
            raise AbtestInputError(f"{spec}: the log carries no candidate feature 'popularity' in requests.parquet")
        policy = PopularityPolicy()
    elif base == "oracle":
        features = oracle_features(fb)
        policy = FeaturePolicy("oracle")
    else:
        kind, sep, path = spec.partition(":")
        if sep and kind in ("sasrec", "lsvcr") and path:
            from lsvcr.policy import load_policy

            return load_policy(kind, Path(path)), features
        raise SimulatorInputError(f"unknown policy spec {spec!r}: use {OFFLINE_POLICY_SPECS}")
    return (Softmax(policy, temperature) if temperature is not None else policy), features


OFFLINE_POLICY_SPECS = ("logged (the logging policy) | table:FILE (a target's probabilities per item and position) | "
                        "scores:FILE (a score per logged candidate; scores:FILE@T sampled) | random | popularity | "
                        "sasrec:MODEL_DIR | lsvcr:MODEL_DIR | oracle (simulator logs only); popularity@T, oracle@T: "
                        "sampled (Plackett–Luce at temperature T)")


def oracle_features(fb) -> dict:
    """The oracle's latent value of every candidate (a simulation's truth/oracle_scores.parquet, beside its
    feedback/): simulator-only, never part of a team's logs."""
    import numpy as np
    import pyarrow.parquet as pq

    path = Path(fb.path).parent / "truth" / "oracle_scores.parquet"
    if not path.is_file():
        raise AbtestInputError(f"oracle: {path} is missing (the oracle ranks by a simulation's latent truth)")
    table = pq.read_table(path)
    rid = table.column("request_id").to_numpy()
    flat = table.column("oracle").combine_chunks()
    offsets, values = flat.offsets.to_numpy(), flat.flatten().to_numpy()
    at = {int(r): k for k, r in enumerate(rid.tolist())}
    out = {}
    for name, s in fb.surfaces.items():
        parts = []
        for r in s.request_id.tolist():
            k = at.get(int(r))
            if k is None:
                raise AbtestInputError(f"oracle: {path} has no scores for request {r}")
            parts.append(values[offsets[k]: offsets[k + 1]])
        out[name] = {"oracle": np.concatenate(parts) if parts else np.zeros(0)}
    return out


def offline_prediction(logs: Path, control: str, treatment: str, metrics=None, estimator: str = DEFAULT_OFFLINE_ESTIMATOR,
                       alpha: float = 0.05, detail: bool = False, bootstrap: int = DEFAULT_BOOTSTRAP,
                       status: Callable[[str], ContextManager] = contextlib.nullcontext,
                       hold_sessions: bool = False) -> OfflinePrediction:
    """Both policies on every request of a feedback log (LOGS, or a simulation run holding one): treatment's
    lift over control per unit. ``status(message)`` wraps each policy's pass (a spinner in the CLI). By
    default the session model (abtest.offline.sessions, fitted on the same logs) carries each policy's
    effect on session length and returns, and the intervals are a user bootstrap of ``bootstrap``
    replicates; ``hold_sessions`` keeps the logged request stream fixed instead (the per-request quantity;
    sessions not identified)."""
    from abtest.offline.estimators import ESTIMATORS
    from abtest.offline.feedback import read_feedback
    from abtest.offline.ope import compare
    from abtest.offline.prediction import predict, resolve_metric
    from simulator.counterfactual import LoggedRequests

    check_offline_options(estimator, alpha, bootstrap, hold_sessions)
    needs_marginals = detail or ESTIMATORS[estimator].weights == "marginal"
    fb = read_feedback(logs)
    logged = logged_requests(fb)
    metrics = offline_metrics(metrics, logged)
    if not fb.has_users:
        hold_sessions = True  # no users, no sessions: each request is a unit
    requests = LoggedRequests(fb)
    targets = {}
    for name, spec in {"control": control, "treatment": treatment}.items():
        with status(f"{name} ({spec}) on the logged requests"):
            targets[name] = offline_targets(fb, requests, spec, needs_marginals)
    fits = None
    if not hold_sessions:
        with status(f"fitting the session model ({bootstrap} bootstrap refits)"):
            fits = session_fits(fb, bootstrap)
    predictions = predict(logged, targets["control"], targets["treatment"], units=offline_units(fb),
                          preview=fb.meta.get("comment_preview", 1), metrics=metrics, estimator=estimator, alpha=alpha,
                          response_model=response_models(fb), bootstrap=bootstrap, sessions=fits)
    result = {
        "logs": str(logs), "logging_policy": fb.logging_policy, "alpha": alpha, "estimator": estimator,
        "unit": fb.unit, "n_units": fb.n_units, "control": control, "treatment": treatment,
        "requests": {kind: len(lg["request_id"]) for kind, lg in logged.items()},
        "metrics": [p.as_dict() for p in predictions], "warnings": [],
    }
    for m in result["metrics"]:
        if "not_identified" in m["flags"]:
            result["warnings"].append(f"{m['name']}: not identified by per-request weights (the logged request stream "
                                      f"is held fixed), so no offline prediction is given")
        if "no_estimate" in m["flags"]:
            result["warnings"].append(f"{m['name']}: no prediction: an arm's estimate is zero or undefined on these logs "
                                      f"(no logged slate matches its prefixes, or its bootstrap replicates do not), so the "
                                      f"ratio is undefined; try --estimator cascade-dr or model")
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
        specs = [resolve_metric(m, logged) for m in metrics]
        kinds = {spec[0]: spec[1] for spec in specs if spec is not None}
        result["detail"] = compare(logged, targets, {kind: [reward] for kind, reward in kinds.items()},
                                   estimator="all", alpha=alpha)
        result["warnings"] += result["detail"].pop("warnings")
    return OfflinePrediction(**result)


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


# --------------------------------------------------------------------------------------------
# the demo: every stage on the embedded default world
# --------------------------------------------------------------------------------------------
DEMO_LOGGING_TEMPERATURE = 1.0  # the logging run: popularity sampled as a Plackett–Luce ranking (exact propensities)
DEMO_SIZES = {
    "default": dict(users=1000, videos=1000, days=2, ab_users=2000, sasrec_epochs=30, lsvcr_epochs=4, align_steps=10),
    "quick": dict(users=300, videos=300, days=1, ab_users=300, sasrec_epochs=10, lsvcr_epochs=2, align_steps=2),
}


class Display(Protocol):
    """What ``run_demo`` shows as it goes (cli.py renders each on the terminal; ``Silent`` shows nothing)."""

    console: Any  # where lsvcr's trainers print their progress (None: nowhere)

    def stage(self, title: str) -> None: ...
    def progress(self, label: str, total: float) -> ContextManager[Callable[[float], None]]: ...
    def status(self, message: str) -> ContextManager: ...
    def simulation(self, summary: dict) -> None: ...
    def dataset(self, ds, path: Path) -> None: ...
    def metrics(self, result: dict) -> None: ...
    def offline(self, result: dict) -> None: ...
    def experiment(self, summary: dict) -> None: ...
    def report(self, report) -> None: ...


class Silent:
    """The ``Display`` that shows nothing."""

    console = None
    progress = staticmethod(no_progress)
    status = staticmethod(contextlib.nullcontext)

    def stage(self, title): pass
    def simulation(self, summary): pass
    def dataset(self, ds, path): pass
    def metrics(self, result): pass
    def offline(self, result): pass
    def experiment(self, summary): pass
    def report(self, report): pass


@dataclass(frozen=True)
class DemoResult:
    """What ``run_demo`` decided: the verdict and its reasons, summary.md's lines, and each stage's seconds."""

    out: Path
    verdict: str
    reasons: tuple
    summary: tuple  # the lines of summary.md
    timings: dict  # stage title -> wall-clock seconds (timings.json)

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "reasons": list(self.reasons), "timings": self.timings}


def demo_summary(decision, offline: dict, online: dict, stage1: Optional[dict] = None) -> list[str]:
    """summary.md: the verdict with its reasons, then the offline prediction beside the online A/B
    (and, given stage 1's report, how much of a stage-1 epoch the treatment saw)."""
    lines = [f"# LSVCR demo — verdict: **{decision.verdict.upper()}**", ""]
    lines += [f"* {r}" for r in decision.reasons]
    if stage1 and stage1.get("epoch_samples"):
        share = stage1["samples"] / stage1["epoch_samples"]
        lines += ["", f"The treatment's stage 1 (alignment with the LLM) ran {stage1['steps']} steps: "
                      f"{stage1['samples']:,} of an epoch's {stage1['epoch_samples']:,} samples ({share:.1%} of an epoch). "
                      "`lsvcr train` runs whole epochs by default."]
    lines += ["", "Offline prediction (before launch, from the logging run) against the online A/B — treatment vs "
              "control, relative lift per user, 95% CI:", ""] + offline_vs_online(offline, online)
    lines += ["", "Paper (Kuaishou online A/B): +4.13% comment watch time."]
    return lines


def run_demo(out: Path, quick: bool = False, seed: int = 0, display: Display = Silent(),
             overwrite: bool = False) -> DemoResult:
    """The whole pipeline on the embedded default world; every artifact under ``out``:
    world/ (logging run) → data/ → models/{sasrec,lsvcr} → offline_eval.json → offline_ab.json
    → ab/ (pre-period + experiment) → report.{json,md,html} → summary.md (+ timings.json).
    A non-empty ``out`` is refused unless ``overwrite`` (then the demo's own artifacts are replaced)."""
    import atomic

    from abtest.decision import decide
    from abtest.render import emit, to_json
    from abtest.report import ReportConfig, build_report
    from lsvcr.align import AlignConfig
    from lsvcr.config import FinetuneConfig
    from lsvcr.data.build import build_dataset
    from lsvcr.data.layout import write_dataset
    from lsvcr.evaluate import EvalConfig
    from lsvcr.train import align_model, evaluate_model, train_model
    from simulator.experiment import run_experiment, world_config
    from simulator.run import simulate

    size = DEMO_SIZES["quick" if quick else "default"]
    atomic.check_output(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("world", "data", "models", "ab", ".world.new"):
        shutil.rmtree(out / name, ignore_errors=True)
    timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(title: str):
        display.stage(title)
        start = time.perf_counter()
        yield
        timings[title] = time.perf_counter() - start

    with stage("1. simulate the platform under an exploring logging policy"):
        cfg = simulation_config(None, seed=seed, n_users=size["users"], n_videos=size["videos"], days=size["days"])
        with display.progress("simulating", cfg.days) as update:
            summary = simulate(cfg, out / "world", "popularity", None, DEMO_LOGGING_TEMPERATURE, None, progress=update)
        display.simulation(summary)

    with stage("2. build the dataset"):
        ds = build_dataset(out / "world")
        write_dataset(ds, out / "data")
        display.dataset(ds, out / "data")

    with stage("3. train the control (SASRec) and the treatment (LSVCR: stage 1 + stage 2)"):
        models = {"sasrec": out / "models" / "sasrec", "lsvcr": out / "models" / "lsvcr"}
        train_model(out / "data", models["sasrec"], FinetuneConfig(model="sasrec", epochs=size["sasrec_epochs"], seed=seed),
                    display.console)
        aligned = out / "models" / "lsvcr-aligned"  # stage 1: the packaged MiniLM under LoRA
        stage1 = align_model(out / "data", aligned, AlignConfig(batch_size=16, max_prompt_tokens=256,
                                                                max_steps=size["align_steps"], seed=seed), display.console)
        train_model(out / "data", models["lsvcr"], FinetuneConfig(model="lsvcr", task="both", epochs=size["lsvcr_epochs"],
                                                                  seed=seed), display.console, init=aligned)

    with stage("4. evaluate offline (test split)"):
        offline_eval = {}
        for name, model in (("popularity", "popularity"), ("sasrec", str(models["sasrec"])), ("lsvcr", str(models["lsvcr"]))):
            for protocol in ("sampled100", "full"):
                result = evaluate_model(model, out / "data", EvalConfig(protocol=protocol, split="test", seed=seed))
                offline_eval.setdefault(name, {})[protocol] = result["tasks"]
                display.metrics(result)
        (out / "offline_eval.json").write_text(json.dumps(offline_eval, indent=1))

    with stage("5. predict the A/B offline, from the logs (off-policy)"):
        specs = {"control": f"sasrec:{models['sasrec']}", "treatment": f"lsvcr:{models['lsvcr']}"}
        prediction = offline_prediction(out / "world", specs["control"], specs["treatment"], status=display.status)
        offline = json.loads(json.dumps(prediction.as_dict()).replace(json.dumps(str(out) + "/")[1:-1], ""))  # paths relative to OUT
        (out / "offline_ab.json").write_text(json.dumps(offline, indent=1, allow_nan=False))
        display.offline(offline)

    with stage("6. online A/B on simulated users (1 pre-period day, 1 experiment day)"):
        base = world_config(out / "world")
        ab_cfg = base.replace(n_users=size["ab_users"], days=2, pre_days=1, log_slates=False, noise_seed=base.seed + 1)
        ab_summary = run_experiment(ab_cfg, out / "ab", policy_factory(specs["control"]), policy_factory(specs["treatment"]),
                                    (specs["control"], specs["treatment"]), world_dir=out / "world")
        display.experiment(ab_summary)

    with stage("7. report"):
        report = build_report(out / "ab", ReportConfig())
        display.report(report)
        for fmt in ("json", "markdown", "html"):
            emit(report, fmt, out / f"report.{ {'markdown': 'md'}.get(fmt, fmt) }", None)
        online = json.loads(to_json(report))
        decision = decide(online, "comment_watch_time", ("video_watch_time", "sessions"))

    lines = demo_summary(decision, offline, online, stage1)
    (out / "summary.md").write_text("\n".join(lines) + "\n")  # results only: the same bytes per seed
    (out / "timings.json").write_text(json.dumps({"stages_s": timings}, indent=1))  # wall-clock, apart
    return DemoResult(out, decision.verdict, tuple(decision.reasons), tuple(lines), timings)
