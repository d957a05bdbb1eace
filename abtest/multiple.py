"""Multiple testing: Holm (family-wise error) and Benjamini–Hochberg (false discovery rate).

The user picks the scope of a family: every test in the report (``global``), the metrics of one
variant (``variant``), or the variants of one metric (``metric``). Tests without a p-value (flagged
results) stay out of every family.

>>> adjust([0.0070092, 3.923932e-06, 0.0159548], "holm").round(6).tolist()
[0.014018, 1.2e-05, 0.015955]
"""
from __future__ import annotations

import numpy as np
from statsmodels.stats.multitest import multipletests

METHODS = {"holm": "holm", "bh": "fdr_bh", "none": None}
SCOPES = ("global", "variant", "metric")


def adjust(p_values, method: str) -> np.ndarray:
    """Adjusted p-values of one family; NaN stays NaN and is not counted."""
    if method not in METHODS:
        raise ValueError(f"correction must be one of {sorted(METHODS)}, not {method!r}")
    p = np.asarray(p_values, dtype=float)
    out = p.copy()
    ok = np.isfinite(p)
    if METHODS[method] is not None and ok.any():
        out[ok] = multipletests(p[ok], method=METHODS[method])[1]
    return out


def adjust_scoped(p_values, variants, metrics, method: str, scope: str = "global") -> np.ndarray:
    """Adjust within each family given by ``scope``; the arrays line up test by test."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    p = np.asarray(p_values, dtype=float)
    keys = {"global": [0] * len(p), "variant": list(variants), "metric": list(metrics)}[scope]
    out = np.full_like(p, np.nan)
    for key in dict.fromkeys(keys):
        idx = np.array([i for i, k in enumerate(keys) if k == key])
        out[idx] = adjust(p[idx], method)
    return out
