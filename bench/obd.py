"""Benchmark: our offline estimators against obp 0.5.7 on real logged data, the Open Bandit Dataset sample.

* Data: the sample in obp 0.5.7's source distribution (`make obd` puts it in .venv/obp-sdist; fetched into
  bench/.cache/ when absent): ZOZOTOWN, 3 positions, campaigns all / men / women, 10,000 impressions each,
  logged once by a uniform-random policy and once by Bernoulli Thompson sampling (BTS).
* Ours: `lsvcr data import-obd` on each folder, then `lsvcr abtest offline --logs LOGS --control logged
  --treatment table:LOGS/policies/OTHER.parquet --metric click --estimator ips|snips|dr --format json`:
  BTS's click rate predicted from the random logs, random's from BTS's logs.
* obp: installed in its own virtual environment (bench/.cache/obp-venv, `--no-deps` with the few packages
  its modules import; its pins need Python < 3.11) and run as its examples/obd/evaluate_off_policy_estimators.py
  does, on the whole sample (no bootstrap): OpenBanditDataset, BernoulliTS(is_zozotown_prior=True,
  random_state=12345).compute_batch_action_dist(n_sim=100000) / Random, InverseProbabilityWeighting,
  SelfNormalizedInverseProbabilityWeighting and DoublyRobust in OffPolicyEvaluation, relative estimation
  error against calc_on_policy_policy_value_estimate (the evaluated policy's mean click in its own logs).
  DoublyRobust gets our reward model's predictions (the context-free item x position model our dr fits:
  without users it is one fit on all the logs, so one [items, positions] table serves every round).
* Printed: BTS's table against obp's (bit for bit), then per campaign and direction both estimates, their
  relative difference (target <= 1e-9), our 95% interval, the truth with its own interval, the relative
  estimation error of each, and whether the estimate agrees with the truth: z = (estimate − truth) over the
  two independent standard errors, |z| < 1.96. Then the predicted lift over the logging policy against the
  on-policy lift; both divide by the logging policy's rate in its own logs, so their difference is the
  value's difference over that rate, and the value's z decides for the lift too.

Usage: python bench/obd.py
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / ".cache"
VENV = CACHE / "obp-venv"
WORK = CACHE / "obd"
OBP_PINS = ["torch==2.13.0", "numpy<2", "scipy<1.15", "scikit-learn<1.6", "pandas<3", "pyyaml", "tqdm", "matplotlib",
            "seaborn"]  # what `import obp` pulls in (obp.utils imports torch; obp.ope.meta matplotlib and seaborn)
CAMPAIGNS = ("all", "men", "women")
OTHER = {"random": "bts", "bts": "random"}  # logs -> the policy evaluated on them
Z = 1.959963984540054

OBP_RUNNER = r'''
import json, sys
import numpy as np
from obp.dataset import OpenBanditDataset
from obp.policy import BernoulliTS, Random
from obp.ope import OffPolicyEvaluation, InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting, DoublyRobust
args = json.loads(sys.argv[1])
out = {}
for run in args["runs"]:
    logs, evaluated, campaign = run["logs"], run["evaluated"], run["campaign"]
    obd = OpenBanditDataset(behavior_policy=logs, campaign=campaign, data_path=args["data_path"])
    kwargs = dict(n_actions=obd.n_actions, len_list=obd.len_list, random_state=args["seed"])
    if evaluated == "bts":
        kwargs["is_zozotown_prior"] = True
        kwargs["campaign"] = campaign
        single = BernoulliTS(**kwargs).compute_batch_action_dist(n_rounds=1, n_sim=args["n_sim"])
    else:
        single = Random(**kwargs).compute_batch_action_dist(n_rounds=1)
    truth = OpenBanditDataset.calc_on_policy_policy_value_estimate(
        behavior_policy=evaluated, campaign=campaign, data_path=args["data_path"])
    bf = obd.obtain_batch_bandit_feedback()
    action_dist = np.tile(single, (bf["n_rounds"], 1, 1))
    saved = np.load(run["q_hat"])  # our q̂ per request: its request_id (the CSV's index) and [items, positions]
    row = {int(r): k for k, r in enumerate(saved["request_id"])}
    q = saved["q"][[row[int(r)] for r in obd.data.index]]  # obp's rounds: the CSV sorted by timestamp (not stably)
    ope = OffPolicyEvaluation(bandit_feedback=bf, ope_estimators=[
        InverseProbabilityWeighting(), SelfNormalizedInverseProbabilityWeighting(), DoublyRobust()])
    values = ope.estimate_policy_values(action_dist=action_dist, estimated_rewards_by_reg_model=q)
    ree = ope.evaluate_performance_of_estimators(ground_truth_policy_value=truth, action_dist=action_dist,
                                                 estimated_rewards_by_reg_model=q, metric="relative-ee")
    out[f"{logs}/{campaign}"] = {"action_dist": single[0].tolist(), "truth": float(truth), "n_rounds": int(bf["n_rounds"]),
                                 "values": {k: float(v) for k, v in values.items()},
                                 "relative_ee": {k: float(v) for k, v in ree.items()}}
print("RESULT " + json.dumps(out))
'''
OBP_NAMES = {"ips": "ipw", "snips": "snipw", "dr": "dr"}  # our --estimator -> obp's estimator_name


def sh(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def ensure_sdist() -> Path:
    """obp-0.5.7/ of the source distribution: `make obd`'s, else fetched into bench/.cache."""
    made = Path(os.environ.get("OBP_SDIST_DIR") or ROOT.parent / ".venv" / "obp-sdist" / "obp-0.5.7")
    if (made / "obp" / "dataset" / "obd").is_dir():
        return made
    here = CACHE / "obp-sdist"
    if not (here / "obp-0.5.7" / "obp" / "dataset" / "obd").is_dir():
        sh([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--ignore-requires-python", "obp==0.5.7",
            "-d", here])
        with tarfile.open(here / "obp-0.5.7.tar.gz") as tar:
            tar.extractall(here, filter="data")
    return here / "obp-0.5.7"


def ensure_obp_venv(sdist_tarball: Path) -> Path:
    py = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if stamp.is_file():
        return py
    sh(["python3", "-m", "venv", "--clear", VENV])
    sh([py, "-m", "pip", "install", "-q", *OBP_PINS])
    sh([py, "-m", "pip", "install", "-q", "--no-deps", "--ignore-requires-python", sdist_tarball])
    stamp.touch()
    return py


def lsvcr(*args) -> str:
    exe = Path(sys.executable).parent / "lsvcr"
    return sh([exe, *args], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout


def our_reward_model(logs: Path) -> tuple[np.ndarray, np.ndarray]:
    """(request ids, [requests, items, positions] q̂) of our dr on LOGS: the item x position model
    cross-fitted on two folds, as abtest.offline.prediction.reward_model_predictions fits it (logs without
    users: each request its own cluster, folds by its place in the log's order, pipeline.logged_requests)."""
    from abtest.offline import ope
    from abtest.offline.feedback import read_feedback

    s = read_feedback(logs).surfaces["feed"]
    n, K = s.items.shape
    mask = s.items >= 0
    fold = np.arange(n) % 2
    A = int(s.cand_flat.max()) + 1
    grids = [(np.repeat(np.arange(A), K)[None, :], np.tile(np.arange(K), A)[None, :], np.full((1, A * K), f)) for f in (0, 1)]
    q = ope.cross_fit(s.items[mask], np.broadcast_to(np.arange(K), (n, K))[mask], s.rewards["click"][mask],
                      np.broadcast_to(fold[:, None], (n, K))[mask], grids)
    table = np.stack([qf.reshape(A, K) for qf in q])  # [fold, items, positions]
    return s.request_id, table[fold]


def on_policy(logs: Path):
    from abtest.offline import ope
    from abtest.offline.feedback import read_feedback

    s = read_feedback(logs).surfaces["feed"]
    return ope.on_policy(s.rewards["click"])


def table(path: Path, shape) -> np.ndarray:
    import pyarrow.parquet as pq

    t = pq.read_table(path).to_pydict()
    dist = np.zeros(shape)
    dist[t["item_id"], t["position"]] = t["probability"]
    return dist


def pct(x: float) -> str:
    return f"{x:+.1%}" if math.isfinite(x) else "n/a"


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    sys.path.insert(0, str(ROOT.parent))
    from abtest.offline import obd  # BTS's table: obd.N_SIM draws, seed obd.SEED (obp's examples' random_state)

    sdist = ensure_sdist()
    data = sdist / "obp" / "dataset" / "obd"
    print(f"setting up obp 0.5.7 in {VENV.relative_to(ROOT.parent)} (first run only) ...", flush=True)
    py = ensure_obp_venv(sdist.parent / "obp-0.5.7.tar.gz")

    # ours: import each folder, then each estimator through the CLI
    ours, runs, truths = {}, [], {}
    for logs in ("random", "bts"):
        for campaign in CAMPAIGNS:
            out = WORK / f"{logs}-{campaign}"
            lsvcr("data", "import-obd", data / logs / campaign, "--out", out, "--overwrite")
            truths[(logs, campaign)] = on_policy(out)
            q_path = WORK / f"qhat-{logs}-{campaign}.npz"
            request_id, q = our_reward_model(out)
            np.savez(q_path, request_id=request_id, q=q)
            runs.append({"logs": logs, "evaluated": OTHER[logs], "campaign": campaign, "q_hat": str(q_path)})
            for est in OBP_NAMES:
                res = json.loads(lsvcr("abtest", "offline", "--logs", out, "--control", "logged", "--treatment",
                                       f"table:{out / 'policies' / (OTHER[logs] + '.parquet')}", "--metric", "click",
                                       "--estimator", est, "--format", "json"))
                ours[(logs, campaign, est)] = res["metrics"][0]
    # obp: the same folders, in its own venv
    p = subprocess.run([str(py), "-c", OBP_RUNNER, json.dumps({"runs": runs, "data_path": str(data), "n_sim": obd.N_SIM,
                                                                "seed": obd.SEED})],
                       capture_output=True, text=True, cwd=str(CACHE), env={**os.environ, "MPLBACKEND": "Agg"})
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if p.returncode != 0 or line is None:
        sys.exit(f"obp run failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    theirs = json.loads(line[len("RESULT "):])

    print("\n== Open Bandit Dataset (obp 0.5.7 sample): our estimators against obp 0.5.7's on the same logs ==")
    print("command: lsvcr abtest offline --logs LOGS --control logged --treatment table:LOGS/policies/OTHER.parquet "
          "--metric click --estimator E --format json")
    worst, tables_equal = {est: 0.0 for est in OBP_NAMES}, True
    for campaign in CAMPAIGNS:
        out = WORK / f"random-{campaign}"
        mine = table(out / "policies" / "bts.parquet", np.shape(theirs[f"random/{campaign}"]["action_dist"]))
        obp_bts = np.asarray(theirs[f"random/{campaign}"]["action_dist"])
        obp_rand = np.asarray(theirs[f"bts/{campaign}"]["action_dist"])
        mine_rand = table(out / "policies" / "random.parquet", obp_rand.shape)
        tables_equal &= np.array_equal(mine, obp_bts) and np.array_equal(mine_rand, obp_rand)
        print(f"BTS table, campaign {campaign} ({len(mine)} items x 3 positions): "
              f"{'bit-identical to' if np.array_equal(mine, obp_bts) else 'DIFFERS from'} obp's BernoulliTS "
              f"(max |diff| {np.abs(mine - obp_bts).max():.1e}); random table "
              f"{'bit-identical' if np.array_equal(mine_rand, obp_rand) else 'DIFFERS'}")
    for logs in ("random", "bts"):
        evaluated = OTHER[logs]
        for campaign in CAMPAIGNS:
            t = theirs[f"{logs}/{campaign}"]
            truth = truths[(evaluated, campaign)]
            logged = truths[(logs, campaign)]
            n_clicks = int(round(truth.value * truth.n))
            assert abs(t["truth"] - truth.value) < 1e-15, (t["truth"], truth.value)
            print(f"\n{evaluated} from {logs}'s logs, campaign {campaign}: truth ({evaluated}'s own logs) "
                  f"{truth.value:.5f} [{truth.ci[0]:.5f}, {truth.ci[1]:.5f}] ({n_clicks} clicks / {truth.n:,}); "
                  f"{logs} on its logs {logged.value:.5f}")
            print(f"  {'':6s} {'ours':>10s} {'obp':>10s} {'rel.diff':>9s} {'our 95% CI':>20s} {'rel-ee':>7s} "
                  f"{'obp rel-ee':>10s}  agrees with truth")
            for est, name in OBP_NAMES.items():
                m = ours[(logs, campaign, est)]
                v, ci = m["treatment_mean"], m["treatment"]["ci"]
                o = t["values"][name]
                diff = abs(v - o) / abs(o)
                worst[est] = max(worst[est], diff)
                se = math.hypot((ci[1] - ci[0]) / (2 * Z), (truth.ci[1] - truth.ci[0]) / (2 * Z))
                zval = (v - truth.value) / se
                print(f"  {est:6s} {v:10.6f} {o:10.6f} {diff:9.1e} [{ci[0]:8.5f}, {ci[1]:8.5f}] "
                      f"{abs(v - truth.value) / truth.value:7.3f} {t['relative_ee'][name]:10.3f}  "
                      f"{'yes' if abs(zval) < Z else 'NO'} (z {zval:+.2f})")
            true_lift = truth.value / logged.value - 1
            se_log = math.hypot(truth.se / truth.value, logged.se / logged.value)
            lo, hi = math.exp(math.log(truth.value / logged.value) - Z * se_log) - 1, \
                math.exp(math.log(truth.value / logged.value) + Z * se_log) - 1
            predicted = [(est, ours[(logs, campaign, est)]) for est in OBP_NAMES]
            print(f"  lift of {evaluated} over {logs} ({logs}'s own rate in both): on-policy {pct(true_lift)} "
                  f"[{pct(lo)}, {pct(hi)}]; predicted " + "; ".join(
                      f"{est} {pct(m['rel_effect'])} [{pct(m['rel_ci'][0])}, {pct(m['rel_ci'][1])}]" for est, m in predicted))
    ok = tables_equal and max(worst.values()) <= 1e-9
    print("\nlargest relative difference from obp over the 6 runs: "
          + ", ".join(f"{est} {w:.1e}" for est, w in worst.items())
          + f" ({'all' if max(worst.values()) <= 1e-9 else 'NOT all'} <= 1e-9); policy tables "
          + ("bit-identical" if tables_equal else "DIFFER"))
    if not ok:
        sys.exit("our estimates or tables differ from obp's")


if __name__ == "__main__":
    main()
