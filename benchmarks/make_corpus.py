#!/usr/bin/env python3
"""Generate a small synthetic training-code corpus (for a smoke run of bench_corpus.py in CI).

usage: python benchmarks/make_corpus.py OUT_DIR [--files 40]

Writes a package of modules: helpers computing KL estimators selected by an option, trainers placing
them in rewards and losses, config dataclasses, and plain modules with no KL code at all.
"""
import argparse
import os

HELPER = '''import torch


def estimate_kl(logp, ref_logp, kind="k1"):
    if kind == "k1":
        return logp - ref_logp
    if kind == "k2":
        return 0.5 * (logp - ref_logp) ** 2
    if kind == "k3":
        return torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    raise ValueError(kind)
'''
TRAINER = '''import torch
from dataclasses import dataclass

from .helpers{i} import estimate_kl


@dataclass
class TrainConfig{i}:
    kl_kind: str = "k3"
    beta: float = 0.04


class Trainer{i}:
    def __init__(self, config):
        self.config = config

    def loss(self, logp, ref_logp, old_logp, advantages, mask):
        ratio = torch.exp(logp - old_logp)
        pg_loss = -(ratio * advantages)
        kl = estimate_kl(logp, ref_logp, kind=self.config.kl_kind)
        loss = pg_loss + self.config.beta * kl
        return (loss * mask).sum() / mask.sum()

    @torch.no_grad()
    def rewards(self, scores, old_logp, ref_logp):
        kl = estimate_kl(old_logp, ref_logp, kind="k1")
        return scores - self.config.beta * kl
'''
PLAIN = '''import math


def area(r):
    return math.pi * r * r


class Shape{i}:
    def __init__(self, w, h):
        self.w, self.h = w, h

    def perimeter(self):
        return 2 * (self.w + self.h)
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=40)
    a = ap.parse_args()
    pkg = os.path.join(a.out, "synthetic")
    os.makedirs(pkg, exist_ok=True)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    n = 0
    i = 0
    while n < a.files:
        for name, text in ((f"helpers{i}.py", HELPER), (f"trainer{i}.py", TRAINER.format(i=i)),
                           (f"plain{i}.py", PLAIN.format(i=i))):
            with open(os.path.join(pkg, name), "w") as fh:
                fh.write(text)
            n += 1
        i += 1
    print(f"wrote {n} files to {pkg}")


if __name__ == "__main__":
    main()
