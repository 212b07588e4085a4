"""Overhead of ``klaudit.probe.wrap`` over the bare loss, on a realistic shape (batch 8 x 1024 tokens).

Times a GRPO-style per-token loss (clipped PPO ratio, k3 as loss, token-mean over a mask), forward and
backward, bare and wrapped: measured on every call (``every=1``, the worst case) and never
(``every=0``, the wrapper's own cost).  Prints the ratios, and what ``every=N`` amortises to, on CPU
and on CUDA when one is present.  Run: ``python benchmarks/probe_overhead.py [--batch 8 --tokens 1024]``.
Timings are printed, never asserted.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from klaudit.probe import wrap


def grpo_loss(logp, old_logp, ref_logp, advantages, mask, beta=0.04, clip=0.2):
    ratio = torch.exp(logp - old_logp)
    pg = -torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages)
    kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    per_token = pg + beta * kl
    return (per_token * mask).sum() / mask.sum()


def inputs(batch, tokens, device, dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, tokens, generator=g).to(device=device, dtype=dtype).requires_grad_(True)
    ref = torch.nn.functional.logsigmoid(logits.detach()) + 0.2 * torch.randn(batch, tokens, generator=g).to(device)
    adv = torch.randn(batch, 1, generator=g).to(device=device, dtype=dtype).expand(batch, tokens)
    mask = (torch.rand(batch, tokens, generator=g) > 0.1).to(device=device, dtype=dtype)
    return logits, ref.to(dtype), adv, mask


def step(fn, logits, ref, adv, mask):
    logp = torch.nn.functional.logsigmoid(logits)
    loss = fn(logp, logp.detach(), ref, adv, mask)
    loss.backward()
    logits.grad = None


def timeit(fn, args, device, repeats):
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        step(fn, *args)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(fn, *args)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(device, batch, tokens, dtype, repeats):
    args = inputs(batch, tokens, device, dtype)
    bare = timeit(grpo_loss, args, device, repeats)
    every1 = timeit(wrap(grpo_loss, policy="logp", reference="ref_logp", every=1), args, device, repeats)
    idle = timeit(wrap(grpo_loss, policy="logp", reference="ref_logp", every=0), args, device, repeats)
    name = f"{device} {str(dtype).replace('torch.', '')}"
    print(f"{name:<16} bare {bare * 1e3:8.3f} ms | wrapped, measuring every call {every1 * 1e3:8.3f} ms "
          f"(x{every1 / bare:.1f}) | wrapped, not measuring {idle * 1e3:8.3f} ms (x{idle / bare:.2f})")
    for n in (10, 100, 1000):
        amortised = (every1 + (n - 1) * idle) / n
        print(f"{'':<16} every={n:<5} amortised x{amortised / bare:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads (default 1: small ops time more steadily without thread wake-ups)")
    a = ap.parse_args()
    torch.set_num_threads(max(1, a.threads))
    print(f"klaudit.probe.wrap overhead, batch {a.batch} x {a.tokens} tokens, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU thread(s)")
    run("cpu", a.batch, a.tokens, torch.float32, a.repeats)
    if torch.cuda.is_available():
        print(f"CUDA device: {torch.cuda.get_device_name()}")
        for dt in (torch.float32, torch.bfloat16):
            run("cuda", a.batch, a.tokens, dt, a.repeats)
    else:
        print("no CUDA device: CUDA timings skipped")


if __name__ == "__main__":
    main()
