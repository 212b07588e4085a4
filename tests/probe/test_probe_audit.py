"""``audit`` against closed forms (THEORY.md sections 0, 1.2-1.5) and THEORY's worked V=4 example."""
import math

import pytest

torch = pytest.importorskip("torch")

from klaudit.probe import ProbeError, audit  # noqa: E402

# THEORY's V=4 example (section 1.1: KL 0.092662, k2 mean 0.097182, abs mean 0.418164), and the
# behaviour policy of its off-policy figures (section 1.5)
PI = (0.1, 0.15, 0.25, 0.5)
Q = (0.15, 0.25, 0.3, 0.3)
MU = (0.1, 0.2, 0.3, 0.4)


def k1(logp, ref):
    return logp - ref


def k2(logp, ref):
    return 0.5 * (logp - ref) ** 2


def k3(logp, ref):
    return torch.exp(ref - logp) - (ref - logp) - 1


# ------------------------------------------------------------------------- closed forms, plain Python
def softmax(theta):
    m = max(theta)
    e = [math.exp(t - m) for t in theta]
    s = sum(e)
    return [x / s for x in e]


def rkl_gradient(pi, q):
    """g*_j = pi_j (ell_j - KL)."""
    ell = [math.log(p / r) for p, r in zip(pi, q)]
    kl = sum(p * e for p, e in zip(pi, ell))
    return [p * (e - kl) for p, e in zip(pi, ell)]


def numeric_gradient(f, theta, h=1e-6):
    out = []
    for j in range(len(theta)):
        tp, tm = list(theta), list(theta)
        tp[j] += h
        tm[j] -= h
        out.append((f(tp) - f(tm)) / (2 * h))
    return out


def close(a, b, tol):
    return max(abs(x - y) for x, y in zip(a, b)) <= tol * max(1e-300, max(abs(y) for y in b))


def theta_of(pi):
    return [math.log(p) for p in pi]


# -------------------------------------------------------------------------------------------- tests
def test_k1_as_loss_has_zero_expected_gradient():
    rep = audit(k1, policy=PI, reference=Q)
    assert max(abs(x) for x in rep.expected) < 1e-15
    assert rep.target.startswith("zero") and rep.cosine is None and rep.scale == 0.0
    assert rep.relative_bias == pytest.approx(1.0)
    assert rep.variance == pytest.approx(0.655, abs=5e-4)  # THEORY P01: "V=4 var 0.655"


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_k2_as_loss_and_k1_in_reward_are_unbiased(seed):
    for fn in (k2, lambda logp, ref: -k1(logp, ref).detach()):
        rep = audit(fn, vocab=5, seed=seed)
        assert close(rep.expected, rkl_gradient(rep.pi, rep.reference), 1e-12)
        assert rep.relative_bias < 1e-12 and rep.cosine == pytest.approx(1.0, abs=1e-12)
        assert rep.scale == pytest.approx(1.0, rel=1e-12)
        assert rep.target == "the reverse-KL gradient grad KL(pi || pi_ref)"
    assert audit(lambda logp, ref: -k1(logp, ref).detach(), vocab=5, seed=seed).kind == "reward"


def test_k2_loss_and_k1_reward_share_the_per_sample_variance():
    a = audit(k2, policy=PI, reference=Q)
    b = audit(lambda logp, ref: -k1(logp, ref).detach(), policy=PI, reference=Q)
    assert a.variance == pytest.approx(b.variance, rel=1e-12)
    assert a.variance == pytest.approx(0.052645, abs=5e-7)  # THEORY 2: "V=4 var 0.052645 for both"


@pytest.mark.parametrize("seed", [0, 3])
def test_k3_as_loss_is_the_forward_kl_gradient(seed):
    rep = audit(k3, vocab=6, seed=seed)
    fkl = [p - r for p, r in zip(rep.pi, rep.reference)]
    assert close(rep.expected, fkl, 1e-12)
    assert rep.target.startswith("the forward-KL gradient")
    assert rep.relative_bias > 1e-3


def test_k3_as_loss_v4_cosine():
    rep = audit(k3, policy=PI, reference=Q)
    assert rep.kl == pytest.approx(0.092662, abs=5e-7)
    assert rep.cosine == pytest.approx(0.996, abs=5e-4)  # THEORY 8.3: "the V=4 cosine is 0.996"


def test_abs_as_loss_is_twice_the_tv_gradient():
    rep = audit(lambda logp, ref: (logp - ref).abs(), policy=PI, reference=Q)
    expected = numeric_gradient(lambda th: sum(abs(p - r) for p, r in zip(softmax(th), Q)), theta_of(PI))
    assert close(rep.expected, expected, 1e-8)
    assert "2 TV" in rep.target


@pytest.mark.parametrize("est,target,theory_bias", [
    (k2, lambda pi: sum(p * 0.5 * math.log(p / r) ** 2 for p, r in zip(pi, Q)), 0.93),
    (k3, lambda pi: -sum(r * math.log(p / r) for p, r in zip(pi, Q)), 0.96),
])
def test_k2_k3_in_reward_targets(est, target, theory_bias):
    """In the reward: grad E_pi[k2] - grad RKL, and grad RKL - grad FKL (THEORY 1.2)."""
    rep = audit(lambda logp, ref: -est(logp, ref).detach(), policy=PI, reference=Q)
    rkl = lambda pi: sum(p * math.log(p / r) for p, r in zip(pi, Q))  # noqa: E731
    if est is k2:
        f = lambda th: target(softmax(th)) - rkl(softmax(th))  # noqa: E731
    else:
        f = lambda th: rkl(softmax(th)) - target(softmax(th))  # noqa: E731  target is FKL here
    assert close(rep.expected, numeric_gradient(f, theta_of(PI)), 1e-7)
    assert rep.relative_bias == pytest.approx(theory_bias, abs=0.005)  # THEORY P03


def test_off_policy_without_importance_weights_is_biased():
    a = audit(k2, policy=PI, reference=Q, behaviour=MU)
    b = audit(k3, policy=PI, reference=Q, behaviour=MU)
    assert not a.on_policy
    # THEORY 1.5: k2 rel. bias 0.088, cos 0.9965; k3 rel. bias 0.180
    assert a.relative_bias == pytest.approx(0.088, abs=5e-4) and a.cosine == pytest.approx(0.9965, abs=5e-5)
    assert b.relative_bias == pytest.approx(0.180, abs=5e-4)
    assert a.target == "none" and b.target == "none"


@pytest.mark.parametrize("name,fn", [
    ("sg(w) k2", lambda logp, ref, old: torch.exp(logp - old).detach() * k2(logp, ref)),
    ("w k3", lambda logp, ref, old: torch.exp(logp - old) * k3(logp, ref)),
    ("w k1", lambda logp, ref, old: torch.exp(logp - old) * k1(logp, ref)),
    ("k1 reward, PPO ratio", lambda logp, ref, old: -k1(logp, ref).detach()),
])
def test_off_policy_importance_weighted_forms_are_unbiased(name, fn):
    rep = audit(fn, policy=PI, reference=Q, behaviour=MU)
    assert close(rep.expected, rkl_gradient(PI, Q), 1e-12), name
    assert rep.relative_bias < 1e-12


def test_off_policy_wrong_pairings():
    diff_w_k2 = audit(lambda logp, ref, old: torch.exp(logp - old) * k2(logp, ref), policy=PI, reference=Q,
                      behaviour=MU)
    sg_w_k3 = audit(lambda logp, ref, old: torch.exp(logp - old).detach() * k3(logp, ref), policy=PI,
                    reference=Q, behaviour=MU)
    assert diff_w_k2.relative_bias > 0.01
    assert close(sg_w_k3.expected, [p - r for p, r in zip(PI, Q)], 1e-12)  # the forward KL again


def test_reward_not_detached_adds_an_entropy_like_term():
    # THEORY P05: the log-prob surrogate on a reward that still carries gradient, V=4 rel. bias 1.24
    rep = audit(lambda logp, ref: k1(logp, ref) * logp, policy=PI, reference=Q, kind="loss")
    assert rep.relative_bias == pytest.approx(1.24, abs=0.005)


def test_seed_determinism_and_dict():
    a, b, c = audit(k3, vocab=5, seed=11), audit(k3, vocab=5, seed=11), audit(k3, vocab=5, seed=12)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    d = a.to_dict()
    for key in ("cosine", "relative_bias", "scale", "variance"):
        assert isinstance(d[key], float)
    assert abs(sum(d["pi"]) - 1) < 1e-12 and len(d["expected"]) == 5
    assert "relative bias" in str(a) and "forward-KL" in str(a)


def test_scaled_estimator_reports_the_multiple():
    rep = audit(lambda logp, ref: 0.25 * k2(logp, ref), policy=PI, reference=Q)
    assert rep.scale == pytest.approx(0.25, rel=1e-12)
    assert rep.relative_bias == pytest.approx(0.75, rel=1e-9)  # no rescaling in the bias
    assert rep.target.startswith("0.25 x the reverse-KL gradient")


def test_bad_inputs():
    with pytest.raises(ProbeError):
        audit(k2, policy=(0.5, 0.6))
    with pytest.raises(ProbeError):
        audit(lambda logp: logp)
    with pytest.raises(ProbeError):
        audit(lambda logp, ref: torch.stack([logp, ref]))
