"""Ship / don't ship / inconclusive: the call a product manager reads, from a finished report.

Rules (in order):
1. A sample-ratio mismatch invalidates the experiment: **invalid**.
2. The primary metric's p-value below alpha with a positive effect, and no guardrail significantly
   worse: **ship**. The primary metric is pre-registered (one test): its own p-value decides;
   guardrails are judged on their multiple-testing adjusted p-values.
3. The primary metric significantly worse, or any guardrail significantly worse: **don't ship**.
4. Otherwise **inconclusive**, with the minimum detectable effect the reader should compare with.
"""
from __future__ import annotations

from typing import NamedTuple


class Decision(NamedTuple):
    verdict: str  # ship | don't ship | inconclusive | invalid
    reasons: list[str]


def _significant(m: dict, alpha: float, adjusted: bool) -> bool:
    p = m.get("p_value_adjusted") if adjusted and m.get("p_value_adjusted") is not None else m.get("p_value")
    return p is not None and p < alpha


def _lift(m: dict) -> str:
    if m.get("rel_effect") is None:
        return f"{m['abs_effect']:+.4g} (abs)"
    lo, hi = m["rel_ci"]
    return f"{100 * m['rel_effect']:+.2f}% [95% CI {100 * lo:+.2f}%, {100 * hi:+.2f}%]"


def decide(report: dict, primary: str, guardrails: tuple[str, ...] = (), variant: str = "treatment") -> Decision:
    """``report`` is the JSON report of ``lsvcr abtest report`` (see DESIGN.md)."""
    alpha = report["alpha"]
    if report["srm"]["p_value"] < report["srm"].get("alpha", 0.001):
        return Decision("invalid", [f"sample ratio mismatch (p = {report['srm']['p_value']:.2g}): the split is "
                                    "broken, no effect estimate can be trusted"])
    by_name = {m["name"]: m for m in report["metrics"] if m["variant"] == variant}
    if primary not in by_name:
        raise KeyError(f"primary metric {primary!r} is not in the report")
    m = by_name[primary]
    reasons = [f"{primary}: {_lift(m)}, p = {m['p_value']:.3g}" + (" (CUPED)" if m.get("cuped") else "")]
    harmed = [g for g in guardrails if g in by_name and _significant(by_name[g], alpha, adjusted=True) and by_name[g]["abs_effect"] < 0]
    for g in harmed:
        reasons.append(f"guardrail {g} is significantly worse: {_lift(by_name[g])}")
    if m["abs_effect"] is None:
        return Decision("inconclusive", reasons + ["the primary metric could not be estimated"])
    primary_significant = _significant(m, alpha, adjusted=False)
    if primary_significant and m["abs_effect"] > 0 and not harmed:
        return Decision("ship", reasons + ["the primary metric improved significantly and no guardrail got worse"])
    if harmed or (primary_significant and m["abs_effect"] < 0):
        return Decision("don't ship", reasons + (["the primary metric got significantly worse"] if not harmed else []))
    return Decision("inconclusive", reasons + [f"no significant change at alpha {alpha}: the experiment cannot tell "
                                               "a lift of this size from noise; run it longer or on more users"])
