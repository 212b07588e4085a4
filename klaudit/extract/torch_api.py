"""What tensor operations mean to the analysis: which calls keep a value, which are exp/log/abs/...,
which reduce over tokens, which stop the gradient, which build distributions.

Only names of PyTorch (and numpy/math twins) live here; user functions are resolved by the linker.
"""
from __future__ import annotations

# Methods that return the same values (per token) as their receiver.
IDENTITY_METHODS = {
    "float", "double", "half", "bfloat16", "to", "contiguous", "view", "view_as", "reshape", "reshape_as",
    "flatten", "unsqueeze", "squeeze", "expand", "expand_as", "clone", "cuda", "cpu", "type", "type_as",
    "transpose", "permute", "t", "narrow", "squeeze_", "unsqueeze_", "flip", "roll", "repeat", "repeat_interleave",
    "masked_fill", "masked_fill_", "requires_grad_", "pin_memory", "numpy", "__getitem__", "nan_to_num",
    "nan_to_num_", "chunk", "split", "unbind", "long", "int", "bool", "float_", "index_select", "masked_select",
    "select", "unflatten", "movedim", "tile", "as_strided", "to_dense", "coalesce", "fill_diagonal_", "copy",
}
# Functions (qualified) that return their first tensor argument unchanged per token.
IDENTITY_FUNCS = {
    "torch.squeeze", "torch.unsqueeze", "torch.reshape", "torch.flatten", "torch.transpose", "torch.masked_fill",
    "torch.nan_to_num", "torch.clone", "torch.masked_select", "torch.index_select", "torch.flip", "torch.roll",
    "torch.as_tensor", "numpy.asarray", "numpy.array", "torch.Tensor.float", "torch.narrow", "torch.select",
}

# Elementwise unary maps, method or function (torch.X, numpy.X, math.X, X_ in-place).
UNARY = {
    "exp": "exp", "log": "log", "abs": "abs", "absolute": "abs", "sign": "sign", "sgn": "sign",
    "sqrt": "sqrt", "square": "square", "neg": "neg", "negative": "neg", "expm1": "expm1", "log1p": "log1p",
    "reciprocal": "reciprocal", "fabs": "abs", "exp2": "exp2", "log2": "log2", "log10": "log10",
}
SMOOTH_OPAQUE = {"sigmoid", "tanh", "logsigmoid", "softplus", "relu", "gelu", "silu", "erf", "atan", "sin", "cos"}

REDUCE = {"sum", "mean", "nansum", "nanmean", "cumsum", "logsumexp_no"}  # positive linear maps over tokens
CLAMP = {"clamp", "clip", "clamp_", "clip_", "clamp_min", "clamp_max", "clamp_min_", "clamp_max_"}
DETACH = {"detach", "detach_"}
NO_GRAD_CONTEXTS = {"torch.no_grad", "torch.inference_mode", "no_grad", "inference_mode", "torch.autograd.no_grad",
                    "torch.autograd.grad_mode.no_grad"}
ENABLE_GRAD_CONTEXTS = {"torch.enable_grad", "enable_grad"}
SCALAR_OUT = {"item", "tolist"}  # values leaving the graph: metrics

TENSOR_MODULES = ("torch", "numpy", "math", "torch.nn.functional", "torch.special", "torch.linalg", "jax.numpy",
                  "torch.Tensor")


def split_qual(q: str):
    """'torch.nn.functional.log_softmax' -> ('torch.nn.functional', 'log_softmax')."""
    if "." not in q:
        return "", q
    i = q.rindex(".")
    return q[:i], q[i + 1:]


def is_tensor_module(mod: str) -> bool:
    return mod in TENSOR_MODULES or mod.startswith("torch.") or mod.startswith("numpy.")
