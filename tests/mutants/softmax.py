"""Broken softmax implementations."""

import torch


def no_max_subtraction(input, dim):
    """exp overflows for logits around 1e4 in float32 and float16."""
    e = input.exp()
    return e / e.sum(dim=dim, keepdim=True)


def wrong_axis(input, dim):
    """Normalizes over the first axis whatever `dim` says."""
    return torch.softmax(input, dim=0)


def log_softmax_instead(input, dim):
    return torch.log_softmax(input, dim=dim)


def temperature_multiplies(logits, temperature):
    """Multiplies by the temperature instead of dividing."""
    return torch.softmax(logits * temperature, dim=-1)


def temperature_ignored(logits, temperature):
    return torch.softmax(logits, dim=-1)


def sum_normalized(input, dim):
    """Divides by the plain sum instead of exponentiating: not shift invariant, negative outputs."""
    return input / input.sum(dim=dim, keepdim=True)


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("softmax", "no_max_subtraction", {"softmax.stability.no_overflow"}),
    ("softmax", "wrong_axis", {"softmax.normalization.sums_to_one", "softmax.reference.matches"}),
    ("softmax", "log_softmax_instead", {"softmax.normalization.sums_to_one", "softmax.reference.matches"}),
    ("softmax", "sum_normalized", {"softmax.normalization.sums_to_one", "softmax.shift_invariance"}),
    ("temperature_softmax", "temperature_multiplies",
     {"temperature_softmax.entropy.monotone",
      "temperature_softmax.limit.zero_is_argmax",
      "temperature_softmax.reference.matches"}),
    ("temperature_softmax", "temperature_ignored",
     {"temperature_softmax.limit.infinity_is_uniform", "temperature_softmax.limit.zero_is_argmax"}),
]
