"""Pearson's chi-square test, shared by every statistical invariant (samplers, ancestral sampling, speculative
decoding): the survival function is torch.special.gammaincc, so no scipy is needed."""

from __future__ import annotations

import torch


def chi_square_pvalue(statistic: float, df: int) -> float:
    """P(X >= statistic) for X ~ chi-square(df): the regularized upper incomplete gamma Q(df / 2, statistic / 2)."""
    if df <= 0:
        return 1.0
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(statistic / 2, dtype=torch.float64)))


def chi_square_test(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int, float]:
    """Pearson's statistic of observed counts against probabilities (both over the same support), its degrees of
    freedom and p-value. Expected counts must be >= 5 for the chi-square approximation (callers ensure >= 20)."""
    n = float(counts.sum())
    expected = probs.to(torch.float64) * n
    statistic = float(((counts.to(torch.float64) - expected) ** 2 / expected).sum())
    df = counts.numel() - 1
    return statistic, df, chi_square_pvalue(statistic, df)
