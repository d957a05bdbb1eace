"""Config values from TOML / dicts are checked against the fields' types (not the annotations' text)."""
from __future__ import annotations

import dataclasses
import typing

import pytest

from simulator.config import BehaviourConfig, SimConfig, WorldConfig, _field_type
from simulator.errors import InputError


def test_every_field_has_a_type_the_loader_checks():
    for cls in (WorldConfig, BehaviourConfig, SimConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in ("world", "behaviour"):
                continue
            kind = _field_type(hints[f.name])
            assert kind in (int, float, bool) or typing.get_origin(kind) is tuple, (cls.__name__, f.name, kind)


def test_values_take_the_fields_types():
    cfg = SimConfig.from_dict({"days": 3, "noise_seed": 7, "log_slates": True,
                               "world": {"n_users": 12, "duration_median_s": 3, "style_popularity": [1, 2, 3, 4, 5]},
                               "behaviour": {"open_intercept": -1}})
    assert cfg.days == 3 and type(cfg.days) is int and cfg.noise_seed == 7 and cfg.log_slates is True
    assert cfg.world.duration_median_s == 3.0 and type(cfg.world.duration_median_s) is float
    assert cfg.world.style_popularity == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert all(type(v) is float for v in cfg.world.style_popularity)
    assert type(cfg.behaviour.open_intercept) is float


@pytest.mark.parametrize("data, message", [
    ({"world": {"n_users": "x"}}, r"\[world\] n_users must be a number"),
    ({"world": {"n_users": True}}, r"\[world\] n_users must be a number"),
    ({"behaviour": {"open_intercept": "high"}}, r"\[behaviour\] open_intercept must be a number"),
    ({"log_slates": 1}, r"\[run\] log_slates must be true or false"),
    ({"world": {"style_popularity": 3}}, r"\[world\] style_popularity must be a list of numbers"),
    ({"world": {"style_popularity": [1, 2, 3, 4, "a"]}}, r"\[world\] style_popularity must be a list of numbers"),
    ({"noise_seed": "x"}, r"\[run\] noise_seed must be a number"),
    ({"world": {"n_users": 2.5}}, r"n_users must be an integer"),  # a number, refused by __post_init__
])
def test_bad_values_are_input_errors(data, message):
    with pytest.raises(InputError, match=message):
        SimConfig.from_dict(data)


def test_toml_round_trip(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[run]\ndays = 4\nnoise_seed = 3\n[world]\nn_users = 50\nstyle_popularity = [1, 1, 1, 1, 1]\n")
    cfg = SimConfig.from_toml(path)
    assert (cfg.days, cfg.noise_seed, cfg.world.n_users, cfg.world.style_popularity) == (4, 3, 50, (1.0,) * 5)
    assert SimConfig.from_dict(cfg.to_dict()) == cfg


def test_a_manifest_with_unset_optional_fields_round_trips():
    """A run's manifest writes noise_seed = None (null); reading it back must not call that a bad number."""
    from simulator.config import SimConfig

    cfg = SimConfig()
    assert cfg.noise_seed is None
    assert SimConfig.from_dict(cfg.to_dict()) == cfg
