from abtest.decision import decide


def report(primary, guard=None, srm_p=0.5):
    metrics = [dict(name="comment_watch_time", variant="treatment", cuped=True, **primary)]
    if guard:
        metrics.append(dict(name="video_watch_time", variant="treatment", cuped=True, **guard))
    return {"alpha": 0.05, "srm": {"p_value": srm_p, "alpha": 0.001}, "metrics": metrics}


def m(effect, p, rel=(0.0, 0.0, 0.0)):
    return dict(abs_effect=effect, p_value=p, p_value_adjusted=p, rel_effect=rel[0], rel_ci=list(rel[1:]))


def test_verdicts():
    assert decide(report(m(2.0, 0.001, (0.05, 0.02, 0.08))), "comment_watch_time").verdict == "ship"
    assert decide(report(m(-2.0, 0.001, (-0.05, -0.08, -0.02))), "comment_watch_time").verdict == "don't ship"
    assert decide(report(m(0.5, 0.4, (0.01, -0.02, 0.04))), "comment_watch_time").verdict == "inconclusive"
    harmed = report(m(2.0, 0.001, (0.05, 0.02, 0.08)), m(-9.0, 0.01, (-0.03, -0.05, -0.01)))
    d = decide(harmed, "comment_watch_time", ("video_watch_time",))
    assert d.verdict == "don't ship" and any("guardrail" in r for r in d.reasons)
    assert decide(report(m(2.0, 0.001), srm_p=1e-6), "comment_watch_time").verdict == "invalid"


def test_primary_uses_its_own_p_value_guardrails_the_adjusted_one():
    primary = dict(abs_effect=2.0, p_value=0.01, p_value_adjusted=0.2, rel_effect=0.05, rel_ci=[0.01, 0.09])
    guard = dict(abs_effect=-1.0, p_value=0.01, p_value_adjusted=0.2, rel_effect=-0.01, rel_ci=[-0.02, 0.0])
    assert decide(report(primary, guard), "comment_watch_time", ("video_watch_time",)).verdict == "ship"
