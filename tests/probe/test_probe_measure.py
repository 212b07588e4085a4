"""``measure`` recovers the coefficient families exactly on hand-written KL implementations."""
import math

import pytest

torch = pytest.importorskip("torch")

from klaudit.derive import families as F  # noqa: E402
from klaudit.probe import (  # noqa: E402
    CoefficientReport, ProbeError, full, logits, measure, model, ones, per_sequence, zeros,
)
from klaudit.probe import grid as G  # noqa: E402


def k1(logp, ref):
    return logp - ref


def k2(logp, ref):
    return 0.5 * (logp - ref) ** 2


def k3(logp, ref):
    return torch.exp(ref - logp) - (ref - logp) - 1


def mean_loss(est, beta=1.0):
    def loss(logp, ref_logp, mask, pg_loss):
        return pg_loss + beta * (est(logp, ref_logp) * mask).sum() / mask.sum()
    return loss


def reward_fn(est, beta=1.0):
    def rewards(logp, ref_logp, scores):
        return scores - beta * est(logp, ref_logp).detach()
    return rewards


# ------------------------------------------------------------------ families, as loss and in the reward
LOSS_CASES = [
    ("k1", k1, "k1_loss", "const", False),
    ("k2", k2, "k2_loss", "ell", True),
    ("k3", k3, "k3_loss", "one_minus_delta", False),
    ("abs", lambda a, b: (a - b).abs(), "abs_loss", "sign", False),
    ("k3inv", lambda a, b: torch.exp(a - b) - 1 - (a - b), "k3inv_loss", "inv_delta_minus_one", False),
]


@pytest.mark.parametrize("name,est,family,template,principled", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
@pytest.mark.parametrize("beta", [1.0, 0.04])
def test_as_loss_families_scaled_and_averaged(name, est, family, template, principled, beta):
    rep = measure(mean_loss(est, beta), mask=ones, pg_loss=0.0)
    assert rep.family == family and rep.template == template
    assert rep.placement == "as_loss"
    assert rep.principled is principled
    assert rep.scale == pytest.approx(beta, rel=1e-9)  # per unit of the token-mean weight
    assert rep.aggregation == "mean over tokens"
    assert rep.residual < 1e-9
    assert rep.coefficient == F.COEFFICIENTS[template][1]
    assert not rep.clamped and rep.ell_only and rep.per_token


REWARD_CASES = [
    ("k1", k1, "k1_reward", "ell", True),
    ("k2", k2, "k2_reward", "half_ell_sq", False),
    ("k3", k3, "k3_reward", "k3_value", False),
    ("abs", lambda a, b: (a - b).abs(), "abs_reward", "abs_ell", False),
]


@pytest.mark.parametrize("name,est,family,template,principled", REWARD_CASES, ids=[c[0] for c in REWARD_CASES])
def test_in_reward_families(name, est, family, template, principled):
    rep = measure(reward_fn(est, 0.1), scores=per_sequence(0.0))
    assert (rep.family, rep.template, rep.placement, rep.principled) == (family, template, "in_reward", principled)
    assert rep.scale == pytest.approx(0.1, rel=1e-9)
    assert rep.reward_detached is True
    # the coefficient is the estimator's value itself, point by point
    for e, v in zip(rep.ells, rep.measured):
        assert v == pytest.approx(0.1 * F.COEFFICIENTS[template][0](e), rel=1e-9, abs=1e-12)


def test_k1_in_reward_and_k2_as_loss_told_apart_by_curvature():
    # the same coefficient ell: a detached reward times logp has no curvature, k2 as loss has beta
    surrogate = measure(lambda logp, ref_logp: (0.3 * (logp - ref_logp).detach() * logp).sum())
    loss = measure(lambda logp, ref_logp: (0.3 * 0.5 * (logp - ref_logp) ** 2).sum())
    assert surrogate.template == loss.template == "ell"
    assert (surrogate.family, surrogate.placement) == ("k1_reward", "in_reward")
    assert (loss.family, loss.placement) == ("k2_loss", "as_loss")
    assert surrogate.second_derivative == 0.0
    assert loss.second_derivative == pytest.approx(0.3, rel=1e-9)


def test_reward_built_from_old_log_probs_tracks_old():
    # k1 from the rollout log-probs in the advantages of a PPO-ratio surrogate
    def loss(logp, old_logp, ref_logp, advantages, beta=0.2):
        shaped = advantages - beta * (old_logp - ref_logp)
        return -(torch.exp(logp - old_logp) * shaped).sum()

    rep = measure(loss, old="old_logp", advantages=zeros)
    assert rep.tracks == "old, importance-weighted"
    assert (rep.family, rep.placement, rep.principled) == ("k1_reward", "in_reward", True)
    assert rep.scale == pytest.approx(0.2, rel=1e-9)


def test_importance_weights():
    def diff_w_k3(logp, old_logp, ref_logp):
        return (torch.exp(logp - old_logp) * k3(logp, ref_logp)).sum()

    def sg_w_k2(logp, old_logp, ref_logp):
        return (torch.exp(logp - old_logp).detach() * k2(logp, ref_logp)).sum()

    def diff_w_k2(logp, old_logp, ref_logp):
        return (torch.exp(logp - old_logp) * k2(logp, ref_logp)).sum()

    a = measure(diff_w_k3, old="old_logp")
    b = measure(sg_w_k2, old="old_logp")
    c = measure(diff_w_k2, old="old_logp")
    for rep in (a, b):  # on-policy the weight is 1: coefficient ell, and it carries pi/pi_old off-policy
        assert (rep.family, rep.principled, rep.tracks) == ("k2_loss", True, "current, importance-weighted")
        assert rep.is_weight == pytest.approx(math.exp(0.3), rel=1e-9)
    assert c.template == "ell_one_plus_half_ell" and c.family is None and not c.principled
    assert "no named family" in str(c)


def test_straight_through_value_k3_gradient_k2():
    def st(logp, ref_logp, mask):
        b = k2(logp, ref_logp)
        v = k3(logp, ref_logp)
        return 0.05 * ((b - b.detach() + v.detach()) * mask).sum() / mask.sum()

    rep = measure(st, mask=ones)
    assert (rep.family, rep.principled, rep.placement) == ("k2_loss", True, "as_loss")
    assert rep.scale == pytest.approx(0.05, rel=1e-9)
    assert rep.max_rel_deviation < 1e-9


def _solve(f, lo, hi):
    for _ in range(200):
        mid = (lo + hi) / 2
        if (f(lo) > 0) == (f(mid) > 0):
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_clamped_k2_reports_the_zero_gradient_region():
    rep = measure(lambda logp, ref_logp: k2(logp, ref_logp).clamp(-10, 10).mean())
    edge = _solve(lambda e: 0.5 * e * e - 10, 0.0, 10.0)  # sqrt(20)
    assert rep.family == "k2_loss"
    assert len(rep.clamped) == 2
    (lo1, hi1), (lo2, hi2) = rep.clamped
    assert lo1 == -math.inf and hi2 == math.inf
    assert hi1 == pytest.approx(-edge, abs=1e-4) and lo2 == pytest.approx(edge, abs=1e-4)
    assert "Zero gradient (clamped)" in str(rep)


def test_clamped_k3_verl_style():
    def loss(logprob, ref_logprob):
        kl = torch.clamp(ref_logprob - logprob, min=-20, max=20)
        return (torch.exp(kl) - kl - 1).clamp(-10, 10).mean()

    rep = measure(loss, "logprob", "ref_logprob")
    k3v = lambda e: math.exp(-e) - 1 + e - 10  # noqa: E731
    low, high = _solve(k3v, -5.0, 0.0), _solve(k3v, 5.0, 20.0)
    assert rep.family == "k3_loss"
    assert [(a, b) for a, b in rep.clamped][0][0] == -math.inf
    assert rep.clamped[0][1] == pytest.approx(low, abs=1e-4)
    assert rep.clamped[1][0] == pytest.approx(high, abs=1e-4) and rep.clamped[1][1] == math.inf


def test_policy_gradient_term_with_zero_advantages_mixed_with_kl():
    def grpo(logp, old_logp, ref_logp, advantages, mask, beta=0.04, clip=0.2):
        ratio = torch.exp(logp - old_logp)
        pg = -torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages)
        per_token = pg + beta * k3(logp, ref_logp)
        return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()

    rep = measure(grpo, old="old_logp", advantages=zeros, mask=ones)
    assert (rep.family, rep.scale, rep.tracks) == ("k3_loss", pytest.approx(0.04, rel=1e-9), "current")
    assert rep.max_rel_deviation > 1.0  # k3's coefficient at delta = e^5 is far from -log(delta)


def test_masked_tokens_are_left_out_and_weights_normalised():
    n = len(G.default_ells())
    mask = torch.ones(1, n, dtype=torch.float64)
    mask[0, ::5] = 0.0

    def loss(logp, ref_logp, mask):
        return (k3(logp, ref_logp) * mask).sum() / mask.sum()

    rep = measure(loss, mask=mask)
    assert rep.masked == int((mask == 0).sum())
    assert rep.family == "k3_loss" and not rep.clamped
    # uneven per-token weights (a position-dependent weight) are divided out
    w = torch.linspace(0.5, 2.0, n, dtype=torch.float64).unsqueeze(0)
    rep2 = measure(lambda logp, ref_logp: (w * k2(logp, ref_logp)).sum())
    assert rep2.family == "k2_loss" and rep2.residual < 1e-9


def test_sum_aggregation_and_sign_error():
    rep = measure(lambda logp, ref_logp: -0.1 * k2(logp, ref_logp).sum())
    assert rep.aggregation == "summed over tokens"
    assert rep.scale == pytest.approx(-0.1, rel=1e-9)
    assert not rep.principled and "sign reversed" in str(rep)


def test_function_that_calls_backward_itself():
    def train_step(logp, ref_logp):
        loss = k3(logp, ref_logp).mean()
        loss.backward()

    rep = measure(train_step)
    assert rep.family == "k3_loss"
    assert any("backward" in n for n in rep.notes)


def test_tuple_and_dict_outputs():
    a = measure(lambda logp, ref_logp: (k2(logp, ref_logp).mean(), 123))
    b = measure(lambda logp, ref_logp: {"stats": 1.0, "loss": k3(logp, ref_logp).mean()})
    assert a.family == "k2_loss" and b.family == "k3_loss"


def test_logits_and_model_sources():
    def from_logits(logits, ref_logits, actions):
        lp = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        rp = torch.log_softmax(ref_logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return k3(lp, rp).mean()

    rep = measure(from_logits, logits("logits", actions="actions"), logits("ref_logits", actions="actions"))
    assert rep.family == "k3_loss" and rep.mode == "token"

    def full_kl(policy, reference, pg_loss, mask):
        lp = torch.log_softmax(policy(None).logits, -1)
        rp = torch.log_softmax(reference(None).logits, -1)
        kl = (lp.exp() * (lp - rp)).sum(-1)
        return pg_loss + (kl * mask).sum() / mask.sum()

    rev = measure(full_kl, model("policy"), model("reference"), pg_loss=0.0, mask=ones)
    assert (rev.family, rev.mode, rev.principled) == ("full_loss", "vocabulary", True)
    assert rev.scale == pytest.approx(1.0, rel=1e-9)

    def full_fkl(policy, reference):
        lp = torch.log_softmax(policy, -1)
        rp = torch.log_softmax(reference, -1)
        return (rp.exp() * (rp - lp)).sum(-1).mean()

    fwd = measure(full_fkl, logits("policy"), logits("reference"))
    assert (fwd.family, fwd.principled) == ("full_forward_loss", False)


def test_unmatched_coefficient_reported_with_residuals():
    rep = measure(lambda logp, ref_logp: torch.tanh(logp - ref_logp).sum())
    assert rep.family is None and rep.template is None and not rep.principled
    assert rep.coefficient == "unmatched"
    assert len(rep.alternatives) >= 3
    assert all(r > 1e-3 for _, _, _, r in rep.alternatives)
    assert rep.residual == rep.alternatives[0][3]
    assert "matches no coefficient family" in str(rep)


def test_no_gradient_and_log_ratio_dependence_checks():
    detached = measure(lambda logp, ref_logp: k3(logp, ref_logp).detach().mean())
    assert detached.template == "zero" and detached.family is None and not detached.principled
    # a coefficient that also depends on pi itself, not only on pi/pi_ref
    not_ratio = measure(lambda logp, ref_logp: (logp.exp() * (logp - ref_logp)).sum())
    assert not_ratio.ell_only is False
    # a sequence-level k2: every token's coefficient is the sequence's total log-ratio
    seq = measure(lambda logp, ref_logp: 0.5 * (logp - ref_logp).sum() ** 2)
    assert seq.per_token is False


def test_bindings_are_checked():
    with pytest.raises(ProbeError, match="bind mask"):
        measure(mean_loss(k3), pg_loss=0.0)
    with pytest.raises(ProbeError, match="no parameter"):
        measure(k3, policy="logp", reference="ref_logp")  # k3(logp, ref): no ref_logp
    with pytest.raises(ProbeError):
        measure(mean_loss(k3), mask=ones, pg_loss=0.0, logp=ones)


def test_report_dict_and_text():
    rep = measure(mean_loss(k3, 0.04), mask=ones, pg_loss=0.0)
    d = rep.to_dict()
    for key in ("family", "coefficient", "principled", "scale", "residual", "max_rel_deviation"):
        assert key in d
    assert d["family"] == "k3_loss" and d["coefficient"] == "1 - delta" and d["principled"] is False
    # the deviation is that of 1 - delta from its first-order line at the most negative fitted ell
    assert d["max_rel_deviation"] == pytest.approx((math.exp(5) - 1) / 5 - 1, rel=1e-9)
    text = str(rep)
    assert text.startswith("behaves like k3 as loss: coefficient 1 - delta (scale 0.04")
    assert "principled: no" in text and "\n" not in text
    assert isinstance(rep, CoefficientReport)
    import json

    json.dumps(d)  # JSON-ready


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path):
    import sys

    rep = measure(mean_loss(k2), mask=ones, pg_loss=0.0)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        rep.plot(str(tmp_path / "c.png"))


def test_plot_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    rep = measure(mean_loss(k3), mask=ones, pg_loss=0.0)
    out = rep.plot(str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000 and out.endswith("c.png")


def test_fill_markers_follow_the_probe_shape():
    from klaudit.probe.sources import Shape

    shape = Shape(2, 7, torch.float64, torch.device("cpu"))
    assert tuple(ones.make(shape).shape) == (2, 7)
    assert tuple(per_sequence(0.0).make(shape).shape) == (2,)
    assert full(3, "long").make(shape).dtype == torch.long


def test_fills_bound_with_functools_partial():
    from functools import partial

    def my_loss(logp, ref_logp, advantages, mask, beta=0.04):
        pg = -advantages * logp
        return ((pg + beta * k3(logp, ref_logp)) * mask).sum() / mask.sum()

    rep = measure(partial(my_loss, advantages=zeros, mask=ones, beta=0.5), policy="logp", reference="ref_logp")
    assert rep.family == "k3_loss" and rep.scale == pytest.approx(0.5, rel=1e-9)
    assert rep.aggregation == "mean over tokens"  # the fills followed the doubled shapes
