"""A hand-written attention kernel to check with lmspec (README: "Validate your own kernel").

    cd examples && lmspec check attention --target mykernels:attention
"""

import torch


def attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    if enable_gqa:
        n = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(n, -3), value.repeat_interleave(n, -3)
    scores = (query @ key.transpose(-2, -1)) * scale
    if is_causal:
        scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ value


# what this kernel does not do is reported as "unsupported", never as a pass
attention.__lmspec__ = {"unsupported_features": ["dropout"]}
