"""A discrete-event short-video platform with comment sections (simpy). Never imports torch or lsvcr.

config.py      the simulation's configs (WorldConfig, BehaviourConfig, SimConfig): every default, the
               TOML file's sections, what manifest.json records
errors.py      InputError, the one exception for bad user input (the CLI maps it to exit code 2)
rng.py         per-user random streams: common random numbers across policies and populations
lexicon.py     topic lexicons and text templates (real words in titles and comments)
world.py       the world: topics, videos, comment sections, users; the latent truth kept in truth/
behaviour.py   the user response model as pure functions
policy.py      the Policy protocol and the built-in policies (random, popularity, oracle)
explore.py     stochastic logging policies with exact propensities (epsilon-greedy, softmax)
batching.py    batched inference for policies whose per-call overhead dominates
engine.py      the discrete-event platform: one simpy process per user, day by day
schema.py      Arrow schemas of every file a run writes (the contract with lsvcr data and abtest)
eventlog.py    engine rows -> the typed event-log table
summary.py     calibration: a run's realised rates beside the reference targets
run.py         ``simulate()``: world + platform + policy -> the run directory (published atomically)
ray.py         the same run on Ray shards (RayOptions, this step's options; imported only with --ray)
experiment.py  A/B experiments on simulated users: pre-period, hashed split, common random numbers
replay.py      replay a logged run's requests to any policy (the counterfactual half of OPE)

Configs follow one rule for every package: a package's config.py holds the configs of what it stores
(here the simulation), and the options of a single step sit beside that step (see lsvcr/__init__.py).
"""
from .config import BehaviourConfig, SimConfig, WorldConfig
from .errors import InputError
from .policy import CommentRequest, History, Policy, Slate, UserTruth, VideoRequest, WorldView
from .run import simulate

__all__ = [
    "BehaviourConfig", "CommentRequest", "History", "InputError", "Policy", "SimConfig", "Slate",
    "UserTruth", "VideoRequest", "WorldConfig", "WorldView", "simulate",
]
