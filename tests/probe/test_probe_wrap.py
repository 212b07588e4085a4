"""``wrap``: the same value and gradient as the bare loss, measurements now and then, nothing kept alive."""
import gc
import logging

import pytest

torch = pytest.importorskip("torch")

from klaudit.probe import wrap  # noqa: E402
from klaudit.probe.report import CoefficientReport  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def grpo_k3(logp, old_logp, ref_logp, advantages, mask, beta=0.04, clip=0.2):
    ratio = torch.exp(logp - old_logp)
    pg = -torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages)
    kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    per_token = pg + beta * kl
    return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()


def ppo_k2(logp, old_logp, ref_logp, advantages, mask, beta=0.04):
    ratio = torch.exp(logp - old_logp)
    return ((-ratio * advantages + beta * 0.5 * (logp - ref_logp) ** 2) * mask).sum() / mask.sum()


def ppo_k1_loss(logp, old_logp, ref_logp, advantages, mask, beta=0.04):
    return ((-torch.exp(logp - old_logp) * advantages + beta * (logp - ref_logp)) * mask).sum() / mask.sum()


def ppo_only(logp, old_logp, ref_logp, advantages, mask):
    return (-torch.exp(logp - old_logp) * advantages * mask).sum() / mask.sum()


def batch(dtype=torch.float32, device="cpu", B=4, T=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, generator=g).to(device=device, dtype=dtype).requires_grad_(True)
    logp = torch.nn.functional.logsigmoid(logits)
    ref = (logp.detach().float() + 0.4 * torch.randn(B, T, generator=g).to(device)).to(dtype)
    adv = torch.randn(B, 1, generator=g).expand(B, T).to(device=device, dtype=dtype)
    mask = (torch.rand(B, T, generator=g) > 0.15).to(device=device, dtype=dtype)
    return logits, logp, logp.detach(), ref, adv, mask


def _value_and_grad(fn, dtype=torch.float32, device="cpu"):
    logits, logp, old, ref, adv, mask = batch(dtype, device)
    out = fn(logp, old, ref, adv, mask)
    (g,) = torch.autograd.grad(out, logits)
    return out.detach(), g


@pytest.mark.parametrize("fn,family", [(grpo_k3, "k3_loss"), (ppo_k2, "k2_loss"), (ppo_k1_loss, "k1_loss")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_same_value_and_gradient_and_the_family_despite_real_advantages(fn, family, dtype):
    w = wrap(fn, policy="logp", reference="ref_logp", every=1)
    v1, g1 = _value_and_grad(w, dtype)
    v2, g2 = _value_and_grad(fn, dtype)
    assert torch.equal(v1, v2) and torch.equal(g1, g2)
    assert v1.dtype == dtype
    assert not w.errors
    rep = w.last
    assert rep.family == family and rep.placement == "as_loss"
    assert rep.masked > 0 and rep.observed[0] < 0 < rep.observed[1]


def test_deviation_over_the_batch_deltas():
    w = wrap(grpo_k3, every=1)
    _value_and_grad(w)
    rep = w.last
    lo, hi = rep.observed
    import math

    # for 1 - delta against ell, the worst point of the batch is its most negative log-ratio
    worst = max(abs((1 - math.exp(-e)) - e) / abs(e) for e in (lo, hi))
    assert rep.max_rel_deviation == pytest.approx(worst, rel=1e-4)
    w2 = wrap(ppo_k2, every=1)
    _value_and_grad(w2)
    assert w2.last.principled and w2.last.max_rel_deviation < 1e-6


def test_schedule_logging_and_reports(caplog):
    w = wrap(ppo_k2, every=3)
    with caplog.at_level(logging.INFO, logger="klaudit.probe"):
        for _ in range(7):
            _value_and_grad(w)
    assert w.calls == 7
    assert [r.step for r in w.reports] == [1, 4, 7]
    msgs = [r.getMessage() for r in caplog.records if r.name == "klaudit.probe"]
    assert len(msgs) == 3 and all("behaves like k2 as loss" in m for m in msgs)
    never = wrap(ppo_k2, every=0)
    _value_and_grad(never)
    assert never.reports == [] and never.calls == 1


def test_no_kl_term_and_reward_functions():
    w = wrap(ppo_only, every=1)
    _value_and_grad(w)
    assert w.last.template == "zero" and w.last.family is None

    def rewards(logprobs, ref_logprobs, scores, beta=0.1):
        return scores - beta * (logprobs - ref_logprobs).detach()

    wr = wrap(rewards, policy="logprobs", reference="ref_logprobs", every=1)
    _, logp, _, ref, _, _ = batch()
    out = wr(logp.detach(), ref, torch.ones(logp.shape[0], 1))
    assert torch.equal(out, rewards(logp.detach(), ref, torch.ones(logp.shape[0], 1)))
    assert (wr.last.family, wr.last.principled) == ("k1_reward", True)


def _tensors_in(obj, seen=None):
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return 1
    if isinstance(obj, dict):
        return sum(_tensors_in(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensors_in(v, seen) for v in obj)
    if isinstance(obj, CoefficientReport):
        return sum(_tensors_in(v, seen) for v in vars(obj).values())
    return 0


def _live_float64():
    import warnings

    gc.collect()
    with warnings.catch_warnings():  # isinstance() on every object touches deprecated torch aliases
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.dtype == torch.float64)


def test_no_graph_or_copy_kept_alive():
    before = _live_float64()
    w = wrap(grpo_k3, every=1)
    for _ in range(2):
        _value_and_grad(w)
    assert len(w.reports) == 2
    assert _tensors_in(w.reports) == 0
    assert _live_float64() == before  # the float64 copies and their graphs are gone


def test_in_place_functions_see_untouched_inputs():
    def rewards_in_place(rewards, rollout_logprobs, ref_logprobs, kl_coef=0.1):
        rewards -= kl_coef * (rollout_logprobs - ref_logprobs).detach()
        return rewards

    _, logp, _, ref, _, _ = batch()
    base = torch.zeros_like(ref)
    w = wrap(rewards_in_place, policy="rollout_logprobs", reference="ref_logprobs", every=1)
    out = w(base.clone(), logp.detach(), ref)
    assert torch.equal(out, rewards_in_place(base.clone(), logp.detach(), ref))
    assert w.last.family == "k1_reward"


def test_a_failing_measurement_never_breaks_the_call(caplog):
    w = wrap(ppo_k2, policy="not_a_parameter", reference="ref_logp", every=1)
    with caplog.at_level(logging.WARNING, logger="klaudit.probe"):
        v, _ = _value_and_grad(w)
    assert torch.equal(v, _value_and_grad(ppo_k2)[0])
    assert w.reports == [] and len(w.errors) == 1 and "not_a_parameter" in w.errors[0][1]
    assert any("could not be measured" in r.getMessage() for r in caplog.records)


def test_wrapper_keeps_the_function_identity():
    w = wrap(ppo_k2)
    assert w.__name__ == "ppo_k2" and w.__wrapped__ is ppo_k2 and w.every == 100


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda(dtype):
    w = wrap(grpo_k3, every=1)
    v1, g1 = _value_and_grad(w, dtype, "cuda")
    v2, g2 = _value_and_grad(grpo_k3, dtype, "cuda")
    assert v1.is_cuda and torch.equal(v1, v2) and torch.equal(g1, g2)
    assert not w.errors and w.last.family == "k3_loss"
