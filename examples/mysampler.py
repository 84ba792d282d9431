"""A top-p (nucleus) filter that breaks ties at the boundary by token id, to check with lmspec.

    cd examples && lmspec check top_p --target mysampler:top_p --option top_p_ties=lowest_index
"""

import torch


def top_p(logits, p):
    """Keep the smallest set of most probable tokens whose probability reaches p; among tokens tied at the boundary
    the lowest ids are kept (a stable descending sort). Removed tokens get -inf; kept logits are unchanged."""
    probs = logits.to(torch.float64).softmax(-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    remove_sorted = mass_before >= p
    remove_sorted[..., 0] = False  # the most probable token is always kept
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))
