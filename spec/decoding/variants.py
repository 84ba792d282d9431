"""Contrastive search, DoLa and grammar-constrained sampling. transformers 5 moved contrastive search and DoLa to
the Hub (unreachable here): their references stand alone, held by these invariants (see reference/decoding/variants.py)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ...reference.decoding import variants as ref
from ..checks import assert_agree, assert_matches, reference_pair, to64
from ..core import Component, Context, Invariant, Option
from .search import MODEL, assert_sequence_distribution, expect_ids, greedy_chain, model_examples, prompt, \
    sequence_distribution, toy
from ..guard import expect_tensor
from ..strategies import materialize, seeds

SU = "Su et al. 2022, A Contrastive Framework for Neural Text Generation, eq. 5"
HF4_CONTRASTIVE = "transformers 4.x _contrastive_search / _ranking_fast (now transformers-community/contrastive-search)"
CHUANG = "Chuang et al. 2024, DoLa: Decoding by Contrasting Layers Improves Factuality, eqs. 2-4"
HF4_DOLA = "transformers 4.x _dola_select_contrast / _relative_top_filter (now transformers-community/dola)"
DRAWS = 2000
ALPHA = 1e-6


# --- contrastive search --------------------------------------------------------------------------------------


@st.composite
def _contrastive_examples(draw) -> dict:
    p = draw(model_examples(min_vocab=3, max_vocab=6, eos=False, max_new=5))
    p.update(B=4, n=max(p["n"], 3), top_k=draw(st.integers(2, p["V"])), alpha=draw(st.sampled_from([0.2, 0.5, 0.6, 0.9, 1.0])))
    return p


def _contrastive(ctx: Context, p: dict, top_k: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    model, ids = toy(p), prompt(ctx, p)
    out = ctx.target(model.with_hidden, ids, top_k, alpha, p["n"])
    return expect_ids(ctx, out, ids.shape[0], ids, ids.shape[-1] + p["n"]), ids


def _check_contrastive_alpha_zero(ctx: Context, p: dict) -> None:
    out, ids = _contrastive(ctx, p, p["top_k"], 0.0)
    expected = greedy_chain(toy(p), ids.cpu(), p["n"])
    if not torch.equal(out, expected):
        ctx.fail(f"penalty_alpha = 0 gave {out.tolist()}, greedy decoding gives {expected.tolist()}")


def _check_contrastive_k_one(ctx: Context, p: dict) -> None:
    out, ids = _contrastive(ctx, p, 1, p["alpha"])
    expected = greedy_chain(toy(p), ids.cpu(), p["n"])
    if not torch.equal(out, expected):
        ctx.fail(f"top_k = 1 gave {out.tolist()}, greedy decoding gives {expected.tolist()}")


def _check_contrastive_reference(ctx: Context, p: dict) -> None:
    out, ids = _contrastive(ctx, p, p["top_k"], p["alpha"])
    expected = ref.contrastive_search(toy(p).with_hidden, ids.cpu(), p["top_k"], p["alpha"], p["n"])
    if not torch.equal(out, expected):
        ctx.fail(f"top_k={p['top_k']}, penalty_alpha={p['alpha']}: output {out.tolist()}, expected {expected.tolist()}")


def _check_contrastive_candidates(ctx: Context, p: dict) -> None:
    out, ids = _contrastive(ctx, p, p["top_k"], p["alpha"])
    model, length = toy(p), ids.shape[-1]
    for t in range(length, out.shape[-1]):
        probs = model(out[:, :t])[:, -1].softmax(-1)
        kth = probs.sort(dim=-1, descending=True).values[:, p["top_k"] - 1]
        chosen = probs.gather(-1, out[:, t : t + 1]).squeeze(-1)
        if (chosen < kth).any():
            b = int((chosen < kth).nonzero()[0])
            ctx.fail(f"step {t - length}, row {b}: chose token {int(out[b, t])} of probability {float(chosen[b]):.4g}, outside the "
                     f"top {p['top_k']} (k-th probability {float(kth[b]):.4g})", row=b, step=t - length)


CONTRASTIVE = Component(
    name="contrastive_search",
    family="decoding",
    signature="contrastive_search(model: Callable[[Int[B, L]], (Float[B, L, V], Float[B, L, D] hidden)], input_ids: Int[B, L], "
              "top_k: int, penalty_alpha: float, max_new_tokens: int) -> Int[B, L + n]",
    summary="Pick among the top-k tokens the best (1 - a) p(v) - a max cos(h_v, context hidden states).",
    reference=ref.contrastive_search,
    dtypes=(),
    invariants=(
        Invariant("contrastive_search.alpha_zero.greedy", "penalty_alpha = 0 is greedy decoding.", SU, "property",
                  _contrastive_examples(), _check_contrastive_alpha_zero),
        Invariant("contrastive_search.top_k_one.greedy", "top_k = 1 is greedy decoding, whatever penalty_alpha.", SU, "property",
                  _contrastive_examples(), _check_contrastive_k_one),
        Invariant("contrastive_search.candidates.top_k", "Every chosen token is among the top_k most probable at its step.",
                  SU, "property", _contrastive_examples(), _check_contrastive_candidates),
        Invariant("contrastive_search.reference.matches",
                  "The tokens equal the reference: argmax over the top-k of (1 - a) p(v) - a max_j cos(h_v, h_j), h_j the "
                  "hidden states of every context token, prompt included.", f"{SU}; {HF4_CONTRASTIVE}", "differential",
                  _contrastive_examples(), _check_contrastive_reference),
    ),
)


# --- DoLa ----------------------------------------------------------------------------------------------------

LAYER_SELECTION = Option(
    name="layer_selection",
    default="per_row",
    choices=("per_row", "batch_mean"),
    doc="how the premature layer is chosen: per sequence (the paper's argmax JSD for each row), or once for the batch "
    "by the JSD averaged over rows (transformers 4.x `_dola_select_contrast`); identical for one row",
)


@st.composite
def _dola_examples(draw) -> dict:
    return {"B": draw(st.integers(1, 3)), "V": draw(st.integers(2, 10)), "C": draw(st.integers(1, 4)), "seed": draw(seeds()),
            "relative_top": draw(st.sampled_from([0.1, 0.05, 0.3])), "pattern": draw(st.sampled_from(["normal", "large"]))}


def _dola_inputs(ctx: Context, p: dict):
    final = materialize((p["B"], p["V"]), p["seed"], ctx.dtype, ctx.device, p["pattern"], salt=1, magnitude=0.1 if p["pattern"] == "large" else 1.5)
    premature = materialize((p["C"], p["B"], p["V"]), p["seed"], ctx.dtype, ctx.device, "normal", salt=2, magnitude=1.5)
    return final, premature


def _selected(ctx: Context, final, premature) -> torch.Tensor | None:
    """The premature layer of each row by the option's rule, or None when two candidates are within rounding."""
    jsd = ref.jensen_shannon(to64(final), to64(premature))  # [C, B]
    if ctx.options.get("layer_selection", "per_row") == "batch_mean":
        jsd = jsd.mean(dim=-1, keepdim=True).expand_as(jsd)
    top = jsd.sort(dim=0, descending=True).values
    slack = 64 * torch.finfo(ctx.dtype).eps * (1 + float(jsd.max()))
    if top.shape[0] > 1 and ((top[0] - top[1]) < slack).any():
        return None
    return jsd.argmax(dim=0)


def _dola_call(ctx: Context, final, premature, relative_top: float) -> torch.Tensor:
    return expect_tensor(ctx.target(final, premature, relative_top), tuple(final.shape), ctx.dtype, ctx.device, finite=False)


def _check_dola_reference(ctx: Context, p: dict) -> None:
    final, premature = _dola_inputs(ctx, p)
    chosen = _selected(ctx, final, premature)
    out = _dola_call(ctx, final, premature, p["relative_top"])
    if chosen is None:
        return  # two candidate layers within rounding of each other: either choice conforms
    base = premature[chosen, torch.arange(p["B"], device=final.device)][None]
    ref64, ref_low = reference_pair(ref.dola_logits, final, base, p["relative_top"])
    assert_matches(ctx, out, ref64, ref_low, "DoLa logits")


def _check_dola_plausibility(ctx: Context, p: dict) -> None:
    final, premature = _dola_inputs(ctx, p)
    kept = _dola_call(ctx, final, premature, p["relative_top"]).detach().cpu() != float("-inf")
    ratio = (to64(final) - to64(final).amax(-1, keepdim=True)).exp()
    slack = 8 * torch.finfo(ctx.dtype).eps
    wrong = (kept & (ratio < p["relative_top"] * (1 - slack))) | (~kept & (ratio >= p["relative_top"] * (1 + slack)))
    if wrong.any():
        b, i = (int(v) for v in wrong.nonzero()[0])
        ctx.fail(f"row {b}, token {i}: final-layer probability ratio {float(ratio[b, i]):.4g} to the maximum, relative_top "
                 f"{p['relative_top']}, but it was {'kept' if kept[b, i] else 'removed'} (the plausibility constraint keeps "
                 "q_N >= relative_top * max q_N)", row=b, token=i)


def _check_dola_selection(ctx: Context, p: dict) -> None:
    final, premature = _dola_inputs(ctx, p)
    chosen = _selected(ctx, final, premature)
    out = to64(_dola_call(ctx, final, premature, p["relative_top"]))
    if chosen is None:
        return
    for b in range(p["B"]):
        single = to64(_dola_call(ctx, final, premature[int(chosen[b])][None], p["relative_top"]))
        what = f"row {b}: all candidates vs only layer {int(chosen[b])}, the one of largest JSD ({ctx.options.get('layer_selection', 'per_row')})"
        if not torch.equal(torch.isfinite(out[b]), torch.isfinite(single[b])):
            ctx.fail(f"{what}: different tokens kept", row=b)
        assert_agree(ctx, out[b][torch.isfinite(out[b])], single[b][torch.isfinite(single[b])], what)


def _check_dola_identical(ctx: Context, p: dict) -> None:
    final, _ = _dola_inputs(ctx, p)
    out = to64(_dola_call(ctx, final, final[None].expand(p["C"], -1, -1).contiguous(), p["relative_top"]))
    kept = torch.isfinite(out)
    assert_agree(ctx, out[kept], torch.zeros(int(kept.sum()), dtype=torch.float64), "contrast of the final layer with itself")

DOLA = Component(
    name="dola_logits",
    family="decoding",
    signature="dola_logits(final_logits: Float[B, V], premature_logits: Float[C, B, V] (candidate layers), relative_top: float "
              "= 0.1) -> Float[B, V]",
    summary="log q_final - log q_premature on the plausible tokens; the premature layer maximizes the JSD.",
    reference=ref.dola_logits,
    dtypes=(torch.float64, torch.float32),
    options=(LAYER_SELECTION,),
    invariants=(
        Invariant("dola_logits.reference.matches",
                  "Kept tokens get log softmax(final) - log softmax(chosen premature layer), the others -inf, within the "
                  "tolerance policy.", f"{CHUANG}; {HF4_DOLA}", "differential", _dola_examples(), _check_dola_reference),
        Invariant("dola_logits.plausibility.relative_top",
                  "Exactly the tokens with final-layer probability >= relative_top x the largest are kept (8 eps relative slack).",
                  f"{CHUANG}, eq. 3 (adaptive plausibility constraint); {HF4_DOLA} _relative_top_filter", "property",
                  _dola_examples(), _check_dola_plausibility),
        Invariant("dola_logits.layer_selection.max_jsd",
                  "The result equals contrasting with the single candidate of largest Jensen-Shannon divergence from the final "
                  "layer (per row, or by the batch mean under layer_selection=batch_mean).",
                  f"{CHUANG}, eq. 4 (dynamic premature layer selection)", "property", _dola_examples(), _check_dola_selection),
        Invariant("dola_logits.contrast.identical_layer_zero",
                  "Contrasting the final layer with itself gives 0 on every kept token.", f"{CHUANG}, eq. 2", "property",
                  _dola_examples(), _check_dola_identical),
    ),
)


# --- grammar-constrained sampling ----------------------------------------------------------------------------


#: grammar examples' toy LM: logits scale 1 (toy's default is 3), a flat enough next-token distribution that the
#: mass the automaton removes is substantial and the tokens it keeps all plausible: how it is removed shows.
GRAMMAR_MODEL_SCALE = 1.0
#: how many grammar seeds, from the drawn one on, `automaton` tries for one whose constraint shows.
GRAMMAR_SEARCH = 1000


@st.composite
def _grammar_examples(draw) -> dict:
    """At least two states and two new tokens: with one state or one step most automata constrain nothing that a
    sample can show (see `automaton`)."""
    p = draw(model_examples(min_vocab=3, max_vocab=5, eos=False, max_batch=1, max_new=3))
    p.update(states=draw(st.integers(2, 4)), grammar_seed=draw(seeds()), B=1, n=max(p["n"], 2), model_scale=GRAMMAR_MODEL_SCALE)
    return p


def automaton(p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The first random automaton, trying seeds p["grammar_seed"], p["grammar_seed"] + 1, ..., that `constrains`
    sampling visibly (if none of GRAMMAR_SEARCH seeds gives one, the one from p["grammar_seed"])."""
    for seed in range(p["grammar_seed"], p["grammar_seed"] + GRAMMAR_SEARCH):
        table, acc = _random_automaton(p, seed)
        if constrains(table, acc):
            return table, acc
    return _random_automaton(p, p["grammar_seed"])


def _random_automaton(p: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random character automaton over {a, b} lifted to the vocabulary: V - 1 tokens of 1-2 characters and EOS
    (id V - 1); trimmed, and with a live start state."""
    gen = torch.Generator().manual_seed(seed)
    s = p["states"]
    chars = torch.randint(0, s, (s, 2), generator=gen)
    chars = torch.where(torch.rand(s, 2, generator=gen) < 0.2, torch.full_like(chars, -1), chars)
    accepting = torch.rand(s, generator=gen) < 0.5
    accepting[int(torch.randint(0, s, (1,), generator=gen))] = True
    tokens = [torch.randint(0, 2, (int(torch.randint(1, 3, (1,), generator=gen)),), generator=gen).tolist() for _ in range(p["V"] - 1)]
    table, acc = ref.lift_automaton(chars, accepting, tokens + [[]])
    if not (acc[0] or (table[0] >= 0).any()):  # dead start: make the start state accept (the empty string)
        accepting[0] = True
        table, acc = ref.lift_automaton(chars, accepting, tokens + [[]])
    return table, acc


def constrains(transitions: torch.Tensor, accepting: torch.Tensor) -> bool:
    """Whether an automaton's constraint shows in what is sampled: the start state allows at least two tokens and
    forbids one (EOS counts: a non-accepting state forbids it); a state reachable from the start forbids a token
    the start allows (the constraint follows the state); and a reachable state does not accept (EOS is gated)."""
    allowed = transitions >= 0
    allowed[:, -1] = accepting  # EOS is the last token
    reachable, frontier = {0}, [0]
    while frontier:
        for nxt in transitions[frontier.pop()].tolist():
            if nxt >= 0 and nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    states = sorted(reachable)
    start = allowed[0]
    return (int(start.sum()) >= 2 and not bool(start.all()) and bool((start & ~allowed[states]).any())
            and not bool(accepting[states].all()))


def walk(transitions: torch.Tensor, accepting: torch.Tensor, generated: list[int], eos: int) -> tuple[bool, str]:
    """Run the automaton over generated tokens: (accepted so far, reason if not)."""
    state = 0
    for i, token in enumerate(generated):
        if token == eos:
            return bool(accepting[state]), f"EOS at step {i} in non-accepting state {state}"
        state = int(transitions[state, token])
        if state < 0:
            return False, f"token {token} at step {i} leaves the language"
    return True, ""


def _grammar_run(ctx: Context, p: dict, transitions, accepting, rows: int, salt: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    model, ids = toy({**p, "eos": -1}), prompt(ctx, p, 1)
    batch = ids.repeat(rows, 1)
    out = ctx.target(model, batch, transitions.to(ctx.device), accepting.to(ctx.device), p["V"] - 1, p["n"],
                     generator=torch.Generator(device=ctx.device).manual_seed(p["seed"] + salt))
    return expect_ids(ctx, out, rows, batch, batch.shape[-1] + p["n"]), ids


def _check_grammar_accepted(ctx: Context, p: dict) -> None:
    transitions, accepting = automaton(p)
    out, ids = _grammar_run(ctx, p, transitions, accepting, 256)
    eos = p["V"] - 1
    for row in out[:, ids.shape[-1] :].tolist():
        ok, why = walk(transitions, accepting, row, eos)
        if not ok:
            ctx.fail(f"generated {row}: {why} (automaton {transitions.tolist()}, accepting {accepting.tolist()})", sequence=row)
        if eos in row and any(t != eos for t in row[row.index(eos) :]):
            ctx.fail(f"generated {row}: tokens after EOS must be EOS (the pad)")


def _mask(transitions: torch.Tensor, accepting: torch.Tensor, eos: int):
    def mask(prefix: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        state = torch.zeros(generated.shape[0], dtype=torch.int64)
        done = torch.zeros(generated.shape[0], dtype=torch.bool)
        for t in range(generated.shape[1]):
            token = generated[:, t]
            move = ~done & (token != eos)
            state = torch.where(move, transitions[state, token.clamp(max=transitions.shape[1] - 1)].clamp(min=0), state)
            done |= token == eos
        return ref.allowed_tokens(transitions, accepting, state, eos)
    return mask


def _check_grammar_distribution(ctx: Context, p: dict, permissive: bool) -> None:
    eos = p["V"] - 1
    if permissive:
        transitions = torch.zeros(1, p["V"], dtype=torch.int64)
        transitions[:, eos] = -1
        accepting = torch.ones(1, dtype=torch.bool)
    else:
        transitions, accepting = automaton(p)
    out, ids = _grammar_run(ctx, p, transitions, accepting, DRAWS)
    generated = out[:, ids.shape[-1] :]
    generated = torch.cat([generated, torch.full((DRAWS, p["n"] - generated.shape[1]), eos)], dim=-1)
    model = toy({**p, "eos": -1})
    seqs, probs = sequence_distribution(model, ids[0], p["n"], eos, None, None if permissive else _mask(transitions, accepting, eos))
    assert_sequence_distribution(ctx, generated, seqs, probs, "permissive grammar vs unconstrained sampling" if permissive
                                 else "constrained sampling vs the renormalized masked distribution")


GRAMMAR = Component(
    name="grammar_constrained_sample",
    family="decoding",
    signature=f"grammar_constrained_sample({MODEL}, input_ids: Int[B, L], transitions: Int[S, V] (-1 = dead; start state 0), "
              "accepting: Bool[S], eos_token_id: int, max_new_tokens: int, generator: torch.Generator) -> Int[B, L + n]",
    summary="Sampling with the tokens a finite automaton rejects masked out; EOS only in accepting states.",
    reference=ref.grammar_constrained_sample,
    dtypes=(),
    invariants=(
        Invariant("grammar_constrained_sample.text.accepted",
                  "Every generated sequence stays in the automaton's language: no token leads to a dead state, EOS only in an "
                  "accepting state, EOS-padded after it.", "Willard & Louf 2023, sec. 3; transformers PrefixConstrainedLogitsProcessor",
                  "property", _grammar_examples(), _check_grammar_accepted),
        Invariant("grammar_constrained_sample.permissive.equals_unconstrained",
                  f"With a permissive automaton (one accepting state, every token allowed) the continuations follow unconstrained "
                  f"sampling's exact distribution: chi-square over every continuation, {DRAWS} draws, false-alarm rate {ALPHA:g}.",
                  "Willard & Louf 2023, sec. 3", "statistical", _grammar_examples(),
                  lambda ctx, p: _check_grammar_distribution(ctx, p, permissive=True), budget=0.5),
        Invariant("grammar_constrained_sample.distribution.renormalized",
                  f"Each step samples from the model's distribution restricted to the allowed tokens and renormalized: chi-square "
                  f"over every continuation, {DRAWS} draws, false-alarm rate {ALPHA:g}.", "Willard & Louf 2023, sec. 3",
                  "statistical", _grammar_examples(), lambda ctx, p: _check_grammar_distribution(ctx, p, permissive=False),
                  budget=0.5),
    ),
)

COMPONENTS = (CONTRASTIVE, DOLA, GRAMMAR)
