"""Backward passes of the differentiable sampling components (issue 15): the losses (cross-entropy, perplexity),
entropy and temperature, differentiated in their float logits; target ids are integers. The filters and samplers
(top-k, top-p, multinomial, ...) are piecewise constant or discrete in their inputs: they get no gradient invariants.

Derivations: d CE / d x_i = (softmax(x)_i - [i = t]) / N for each of the N rows (the mean's 1 / N included), a row
whose target is ignore_index contributes nothing, so its gradient is exactly zero; perplexity = exp(CE) scales that by
the perplexity; d H / d x_i = -p_i (log p_i + H); temperature's is g / t."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ...reference import sampling as ref
from ..checks import PROPERTY_ULPS, assert_equal, assert_within, to64
from ..core import Context, invariant, row
from ..gradients import backward_complete, backward_finite_differences, backward_matches, backward_repeatable
from ..gradients import cotangents_for, gradient_of
from .inputs import logits, temperature_examples
from .metrics import _ce_examples, _masked_examples, _masked_logits, _ppl_examples, _targets

AUTOGRAD = "torch tools/autograd/derivatives.yaml (log_softmax_backward_data, nll_loss_backward, div)"
SOURCES = {
    "cross_entropy": f"d CE / d x = (softmax(x) - onehot(t)) / N per row; {AUTOGRAD}",
    "perplexity": f"d exp(CE) / d x = exp(CE) (softmax(x) - onehot(t)) / N; {AUTOGRAD}",
    "entropy": f"d H / d x_i = -p_i (log p_i + H), Shannon 1948 and the softmax Jacobian; {AUTOGRAD}",
    "temperature": f"d (x / t) / d x = 1 / t; {AUTOGRAD}",
}
EXAMPLES = {"cross_entropy": _ce_examples(), "perplexity": _ppl_examples, "entropy": _masked_examples(),
            "temperature": temperature_examples()}
WRT = {"cross_entropy": "the logits (input)", "perplexity": "the logits", "entropy": "the logits (-inf ones included)",
       "temperature": "the logits"}
FD_WRT = {**WRT, "entropy": "the logits (finite ones)"}


def backward_call(ctx: Context, p: dict, component: str) -> tuple:
    """(reference, args, wrt) of one example of `component`: the logits are the only differentiable input."""
    if component == "cross_entropy":
        return ref.cross_entropy, (logits(ctx, p), _targets(ctx, p)), [0]
    if component == "perplexity":
        return ref.perplexity, (logits(ctx, p, "normal"), _targets(ctx, p)), [0]
    if component == "entropy":
        return ref.entropy, (_masked_logits(ctx, p),), [0]
    return ref.temperature, (logits(ctx, p), p["t"]), [0]


def _rows(ids: tuple[str, ...], statement: str, wrt: dict = WRT) -> list:
    """One row per differentiable component, from its literal id (the component is the id's first part)."""
    return [row(i, component=c, examples=EXAMPLES[c], source=SOURCES[c], statement=statement.format(wrt=wrt[c]))
            for i, c in ((i, i.split(".", 1)[0]) for i in ids)]


@invariant(*_rows(("cross_entropy.backward.matches_reference",
                   "perplexity.backward.matches_reference",
                   "entropy.backward.matches_reference",
                   "temperature.backward.matches_reference"),
                  "The vector-Jacobian product for {wrt} matches the float64 reference's within "
                  "the tolerance policy (random cotangents; target ids are not differentiable)."),
           kind="differential", requires={"backward"}, budget=0.5)
def check_backward_matches(ctx: Context, p: dict, component: str) -> None:
    reference, args, wrt = backward_call(ctx, p, component)
    backward_matches(ctx, reference, args, {}, wrt, p["seed"], ["logits"])


@invariant(*_rows(("cross_entropy.backward.complete",
                   "perplexity.backward.complete",
                   "entropy.backward.complete",
                   "temperature.backward.complete"),
                  "{wrt} get a gradient of their own shape, dtype and device when they require grad, and "
                  "requiring grad does not change the output."),
           requires={"backward"}, budget=0.5)
def check_backward_complete(ctx: Context, p: dict, component: str) -> None:
    reference, args, wrt = backward_call(ctx, p, component)
    backward_complete(ctx, reference, args, {}, wrt, p["seed"], ["logits"])


@invariant(*_rows(("cross_entropy.backward.repeatable",
                   "perplexity.backward.repeatable",
                   "entropy.backward.repeatable",
                   "temperature.backward.repeatable"),
                  "Pulling back twice through one graph gives the same gradient for {wrt}, and two "
                  "backward calls accumulate their sum into .grad."),
           requires={"backward"}, budget=0.5)
def check_backward_repeatable(ctx: Context, p: dict, component: str) -> None:
    reference, args, wrt = backward_call(ctx, p, component)
    backward_repeatable(ctx, reference, args, {}, wrt, p["seed"], ["logits"])


@invariant(*_rows(("cross_entropy.backward.finite_differences",
                   "perplexity.backward.finite_differences",
                   "entropy.backward.finite_differences",
                   "temperature.backward.finite_differences"),
                  "float64: the gradient for {wrt} agrees with central finite differences of "
                  "the target's own forward along a random direction.", FD_WRT),
           requires={"backward"}, dtypes=(torch.float64,), budget=0.5)
def check_backward_finite_differences(ctx: Context, p: dict, component: str) -> None:
    # a step along a direction cannot move a -inf logit (and the step is scaled by max |input|): entropy's masked
    # logits are left to the other gradient checks
    reference, args, wrt = backward_call(ctx, {**p, "masked": 0}, component)
    backward_finite_differences(ctx, reference, args, {}, wrt, p["seed"], ["logits"])


#: torch.nn.functional.cross_entropy's default ignore_index (HF's label padding, -100)
IGNORE_INDEX = -100


@st.composite
def _ignored_examples(draw) -> dict:
    p = draw(_ce_examples())
    p["ignored"] = draw(st.integers(1, 4))
    return p


@invariant("cross_entropy.backward.ignored_targets_zero", examples=_ignored_examples(),
           requires={"backward", "ignore_index"}, budget=0.5,
           source=f"torch.nn.functional.cross_entropy (ignore_index=-100); {AUTOGRAD}",
           statement="Rows whose target is ignore_index (-100) get exactly zero gradient in every logit: the loss does "
           "not depend on them (the first row is never ignored, so the mean is defined).")
def check_ignored_targets_zero(ctx: Context, p: dict) -> None:
    n = max(p["B"], 2)
    x = logits(ctx, {**p, "B": n})
    ignored = torch.rand(n, generator=torch.Generator().manual_seed(p["seed"] + 11)) < p["ignored"] / 5
    ignored[0], ignored[-1] = False, True
    t = _targets(ctx, p, n).masked_fill(ignored.to(ctx.device), IGNORE_INDEX)
    (grad,) = gradient_of(ctx, ref.cross_entropy, (x, t), {}, [0], p["seed"], ["logits"])
    rows = [int(i) for i in ignored.nonzero().flatten()]
    got = grad.cpu()[ignored]
    assert_equal(ctx, got, torch.zeros_like(got), f"gradient of the logits of rows {rows}, whose target is "
                 f"ignore_index {IGNORE_INDEX}")


@invariant(*[row(i, component=c, examples=EXAMPLES[c],
                 source=f"softmax(x + c) = softmax(x), so L(x + c 1) = L(x) and grad L . 1 = 0; {SOURCES[c]}")
             for i, c in ((i, i.split(".", 1)[0]) for i in ("cross_entropy.backward.rows_sum_to_zero",
                                                            "perplexity.backward.rows_sum_to_zero",
                                                            "entropy.backward.rows_sum_to_zero"))],
           statement="Each row's gradient in the logits sums to zero (up to rounding of its terms): adding a constant "
           "to a row's logits changes nothing, so the softmax term of the gradient balances the target's.",
           requires={"backward"}, budget=0.5)
def check_rows_sum_to_zero(ctx: Context, p: dict, component: str) -> None:
    reference, args, wrt = backward_call(ctx, p, component)
    (grad,) = gradient_of(ctx, reference, args, {}, wrt, p["seed"], ["logits"])
    g = grad.cpu().to(torch.float64)
    if not bool(torch.isfinite(g).all()):
        ctx.fail("the gradient of the logits has non-finite values")
    x = to64(args[0]).cpu()
    ref_out = reference(*to64(args))
    (c,) = cotangents_for(ref_out, p["seed"], ctx.dtype, ctx.device)
    # the gradient's scale: |c| (entropy), |c| / N (cross-entropy), |c| ppl / N (perplexity)
    per_row = 1.0 if component == "entropy" else float(ref_out.abs()) ** (component == "perplexity") / x.shape[0]
    scale = to64(c).cpu().abs() * per_row
    # each term rounds to eps of itself, and log p_i to eps of the logsumexp (~ max |x|): p_i to eps max |x|
    sums, magnitude = g.sum(-1), g.abs().sum(-1)
    largest = x.masked_fill(~torch.isfinite(x), 0).abs().amax(-1)
    allowed = PROPERTY_ULPS * torch.finfo(ctx.dtype).eps * (magnitude + scale * (1 + largest))
    b = int((sums.abs() - allowed).argmax())
    assert_within(ctx, float(sums[b]), 0.0, float(allowed[b]),
                  f"sum over the vocabulary of row {b}'s gradient (sum of |terms| {float(magnitude[b]):.3g})")
