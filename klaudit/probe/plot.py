"""``CoefficientReport.plot``: measured coefficients over delta, with -log(delta) and the matched curve.

matplotlib is optional: without it, plotting raises ImportError saying how to install it.
"""
from __future__ import annotations

import math

from ..derive import families as F


def plot_coefficient(rep, path: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from e
    pts = [(e, v) for e, v in zip(rep.ells, rep.measured) if v is not None and math.isfinite(v) and abs(e) <= 8]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter([math.exp(-e) for e, _ in pts], [v for _, v in pts], s=14, color="black", zorder=3,
               label="measured")
    xs = [x / 50.0 for x in range(-300, 301)]
    deltas = [math.exp(-e) for e in xs]
    if rep.template not in (None, "zero"):
        f = F.COEFFICIENTS[rep.template][0]
        scale, offset = rep.scale, rep.offset
        if scale is None:  # a wrap report: measured values are relative, refit them
            fitted = F.fit([v for _, v in pts], [e for e, _ in pts], f) if rep.template != "const" else None
            scale, offset = (fitted[0], fitted[1]) if fitted else (pts[0][1] if pts else 1.0, 0.0)
        ax.plot(deltas, [scale * f(e) + offset for e in xs], color="tab:blue",
                label=f"matched: {rep.coefficient}")
        slope = F.SLOPES_AT_DELTA_ONE.get(rep.template)
        if slope:
            c0 = scale * f(0.0) + offset
            ax.plot(deltas, [c0 + scale * slope * e for e in xs], "--", color="tab:green",
                    label="-log(delta) (principled)")
    else:
        ax.plot(deltas, xs, "--", color="tab:green", label="-log(delta) (principled)")
    ax.set_xscale("log")
    ax.set_xlabel("delta = pi_ref / pi")
    ax.set_ylabel("gradient coefficient c(delta)")
    ax.set_title(f"klaudit probe: {rep.words}" + (" (principled)" if rep.principled else ""))
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
