"""Contrastive search, DoLa and grammar-constrained sampling. transformers 5 moved contrastive search and DoLa to
the Hub (unreachable here): their references stand alone, held by these invariants (reference/decoding/variants.py)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ...reference.decoding import variants as ref
from ..checks import assert_agree, assert_equal, assert_matches, expect_tensor, reference_pair, show, to64
from ..core import Component, Context, Option, invariant, row
from ..strategies import materialize, seeds
from .models import ALPHA, DRAWS, MODEL, assert_sequence_distribution, expect_ids, greedy_chain, model_examples, \
    pad_to, prompt, sequence_distribution, toy

SU = "Su et al. 2022, A Contrastive Framework for Neural Text Generation, eq. 5"
HF4_CONTRASTIVE = "transformers 4.x _contrastive_search / _ranking_fast (now transformers-community/contrastive-search)"
CHUANG = "Chuang et al. 2024, DoLa: Decoding by Contrasting Layers Improves Factuality, eqs. 2-4"
HF4_DOLA = "transformers 4.x _dola_select_contrast / _relative_top_filter (now transformers-community/dola)"
WILLARD = "Willard & Louf 2023, sec. 3"


# --- contrastive search --------------------------------------------------------------------------------------

CONTRASTIVE = Component(
    name="contrastive_search",
    signature="contrastive_search(model: Callable[[Int[B, L]], (Float[B, L, V], Float[B, L, D] hidden)], "
              "input_ids: Int[B, L], top_k: int, penalty_alpha: float, max_new_tokens: int) -> Int[B, L + n]",
    summary="Pick among the top-k tokens the best (1 - a) p(v) - a max cos(h_v, context hidden states).",
    reference=ref.contrastive_search,
    dtypes=(),
)


@st.composite
def _contrastive_examples(draw) -> dict:
    p = draw(model_examples(min_vocab=3, max_vocab=6, eos=False, max_new=5))
    p.update(B=4, n=max(p["n"], 3), top_k=draw(st.integers(2, p["V"])),
             alpha=draw(st.sampled_from([0.2, 0.5, 0.6, 0.9, 1.0])))
    return p


def _contrastive(ctx: Context, p: dict, top_k: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    model, ids = toy(p), prompt(ctx, p)
    out = ctx.target(model.with_hidden, ids, top_k, alpha, p["n"])
    return expect_ids(ctx, out, ids.shape[0], ids, ids.shape[-1] + p["n"]), ids


@invariant(row("contrastive_search.alpha_zero.greedy", statement="penalty_alpha = 0 is greedy decoding.",
               top_k=None, alpha=0.0),
           row("contrastive_search.top_k_one.greedy", statement="top_k = 1 is greedy decoding, whatever penalty_alpha.",
               top_k=1, alpha=None),
           source=SU, examples=_contrastive_examples())
def check_contrastive_greedy(ctx: Context, p: dict, top_k: int | None, alpha: float | None) -> None:
    """The row fixes top_k or penalty_alpha; the other is drawn."""
    top_k = p["top_k"] if top_k is None else top_k
    alpha = p["alpha"] if alpha is None else alpha
    out, ids = _contrastive(ctx, p, top_k, alpha)
    expected = greedy_chain(toy(p), ids.cpu(), p["n"])
    assert_equal(ctx, out, expected, f"top_k={top_k}, penalty_alpha={alpha}: {out.tolist()} vs greedy decoding "
                 f"{expected.tolist()}")


@invariant("contrastive_search.candidates.top_k", examples=_contrastive_examples(),
           statement="Every chosen token is among the top_k most probable at its step.", source=SU)
def check_contrastive_candidates(ctx: Context, p: dict) -> None:
    out, ids = _contrastive(ctx, p, p["top_k"], p["alpha"])
    model, length = toy(p), ids.shape[-1]
    for t in range(length, out.shape[-1]):
        probs = model(out[:, :t])[:, -1].softmax(-1)
        kth = probs.sort(dim=-1, descending=True).values[:, p["top_k"] - 1]
        chosen = probs.gather(-1, out[:, t : t + 1]).squeeze(-1)
        if (chosen < kth).any():
            b = int((chosen < kth).nonzero()[0])
            got, kth_b = show(float(chosen[b]), float(kth[b]))
            ctx.fail(f"step {t - length}, row {b}: chose token {int(out[b, t])} of probability {got}, outside the top "
                     f"{p['top_k']} (k-th probability {kth_b})", row=b, step=t - length)


@invariant("contrastive_search.reference.matches", kind="differential", examples=_contrastive_examples(),
           statement="The tokens equal the reference: argmax over the top-k of (1 - a) p(v) - a max_j cos(h_v, h_j), "
                     "h_j the hidden states of every context token, prompt included.",
           source=f"{SU}; {HF4_CONTRASTIVE}")
def check_contrastive_reference(ctx: Context, p: dict) -> None:
    out, ids = _contrastive(ctx, p, p["top_k"], p["alpha"])
    expected = ref.contrastive_search(toy(p).with_hidden, ids.cpu(), p["top_k"], p["alpha"], p["n"])
    assert_equal(ctx, out, expected, f"top_k={p['top_k']}, penalty_alpha={p['alpha']}: output {out.tolist()} vs "
                 f"{expected.tolist()}")


# --- DoLa ----------------------------------------------------------------------------------------------------

DOLA = Component(
    name="dola_logits",
    signature="dola_logits(final_logits: Float[B, V], premature_logits: Float[C, B, V] (candidate layers), "
              "relative_top: float = 0.1) -> Float[B, V]",
    summary="log q_final - log q_premature on the plausible tokens; the premature layer maximizes the JSD.",
    reference=ref.dola_logits,
    dtypes=(torch.float64, torch.float32),
    options=(Option(
        name="layer_selection",
        default="per_row",
        choices=("per_row", "batch_mean"),
        doc="how the premature layer is chosen: per sequence (the paper's argmax JSD for each row), or once for the "
            "batch by the JSD averaged over rows (transformers 4.x `_dola_select_contrast`); identical for one row",
    ),),
)


@st.composite
def _dola_examples(draw) -> dict:
    return {"B": draw(st.integers(1, 3)), "V": draw(st.integers(2, 10)), "C": draw(st.integers(1, 4)),
            "seed": draw(seeds()), "relative_top": draw(st.sampled_from([0.1, 0.05, 0.3])),
            "pattern": draw(st.sampled_from(["normal", "large"]))}


def _dola_inputs(ctx: Context, p: dict):
    final = materialize((p["B"], p["V"]), p["seed"], ctx.dtype, ctx.device, p["pattern"], salt=1,
                        magnitude=0.1 if p["pattern"] == "large" else 1.5)
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
    """The target's logits: -inf off the plausible tokens, so not `call` (which wants them finite)."""
    return expect_tensor(ctx.target(final, premature, relative_top), tuple(final.shape), ctx.dtype, ctx.device,
                         finite=False)


@invariant("dola_logits.reference.matches", kind="differential", examples=_dola_examples(),
           statement="Kept tokens get log softmax(final) - log softmax(chosen premature layer), the others -inf, "
                     "within the tolerance policy.",
           source=f"{CHUANG}; {HF4_DOLA}")
def check_dola_reference(ctx: Context, p: dict) -> None:
    final, premature = _dola_inputs(ctx, p)
    chosen = _selected(ctx, final, premature)
    out = _dola_call(ctx, final, premature, p["relative_top"])
    if chosen is None:
        return  # two candidate layers within rounding of each other: either choice conforms
    base = premature[chosen, torch.arange(p["B"], device=final.device)][None]
    ref64, ref_low = reference_pair(ref.dola_logits, final, base, p["relative_top"])
    assert_matches(ctx, out, ref64, ref_low, "DoLa logits")


@invariant("dola_logits.plausibility.relative_top", examples=_dola_examples(),
           statement="Exactly the tokens with final-layer probability >= relative_top x the largest are kept (8 eps "
                     "relative slack).",
           source=f"{CHUANG}, eq. 3 (adaptive plausibility constraint); {HF4_DOLA} _relative_top_filter")
def check_dola_plausibility(ctx: Context, p: dict) -> None:
    final, premature = _dola_inputs(ctx, p)
    kept = _dola_call(ctx, final, premature, p["relative_top"]).detach().cpu() != float("-inf")
    ratio = (to64(final) - to64(final).amax(-1, keepdim=True)).exp()
    slack = 8 * torch.finfo(ctx.dtype).eps
    wrong = (kept & (ratio < p["relative_top"] * (1 - slack))) | (~kept & (ratio >= p["relative_top"] * (1 + slack)))
    if wrong.any():
        b, i = (int(v) for v in wrong.nonzero()[0])
        got, top = show(float(ratio[b, i]), float(p["relative_top"]))
        ctx.fail(f"row {b}, token {i}: final-layer probability ratio {got} to the maximum, relative_top {top}, but "
                 f"it was {'kept' if kept[b, i] else 'removed'} (the plausibility constraint keeps q_N >= "
                 "relative_top * max q_N)", row=b, token=i)


@invariant("dola_logits.layer_selection.max_jsd", examples=_dola_examples(),
           statement="The result equals contrasting with the single candidate of largest Jensen-Shannon divergence "
                     "from the final layer (per row, or by the batch mean under layer_selection=batch_mean).",
           source=f"{CHUANG}, eq. 4 (dynamic premature layer selection)")
def check_dola_selection(ctx: Context, p: dict) -> None:
    final, premature = _dola_inputs(ctx, p)
    chosen = _selected(ctx, final, premature)
    out = to64(_dola_call(ctx, final, premature, p["relative_top"]))
    if chosen is None:
        return
    rule = ctx.options.get("layer_selection", "per_row")
    for b in range(p["B"]):
        single = to64(_dola_call(ctx, final, premature[int(chosen[b])][None], p["relative_top"]))
        what = f"row {b}: all candidates vs only layer {int(chosen[b])}, the one of largest JSD ({rule})"
        assert_equal(ctx, torch.isfinite(out[b]), torch.isfinite(single[b]), f"{what}: tokens kept")
        assert_agree(ctx, out[b][torch.isfinite(out[b])], single[b][torch.isfinite(single[b])], what)


@invariant("dola_logits.contrast.identical_layer_zero", examples=_dola_examples(),
           statement="Contrasting the final layer with itself gives 0 on every kept token.", source=f"{CHUANG}, eq. 2")
def check_dola_identical(ctx: Context, p: dict) -> None:
    final, _ = _dola_inputs(ctx, p)
    out = to64(_dola_call(ctx, final, final[None].expand(p["C"], -1, -1).contiguous(), p["relative_top"]))
    kept = torch.isfinite(out)
    assert_agree(ctx, out[kept], torch.zeros(int(kept.sum()), dtype=torch.float64),
                 "contrast of the final layer with itself")


# --- grammar-constrained sampling ----------------------------------------------------------------------------

GRAMMAR = Component(
    name="grammar_constrained_sample",
    signature=f"grammar_constrained_sample({MODEL}, input_ids: Int[B, L], transitions: Int[S, V] (-1 = dead; start "
              "state 0), accepting: Bool[S], eos_token_id: int, max_new_tokens: int, generator: torch.Generator) "
              "-> Int[B, L + n]",
    summary="Sampling with the tokens a finite automaton rejects masked out; EOS only in accepting states.",
    reference=ref.grammar_constrained_sample,
    dtypes=(),
)

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
    p.update(states=draw(st.integers(2, 4)), grammar_seed=draw(seeds()), B=1, n=max(p["n"], 2),
             model_scale=GRAMMAR_MODEL_SCALE)
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
    tokens = [torch.randint(0, 2, (int(torch.randint(1, 3, (1,), generator=gen)),), generator=gen).tolist()
              for _ in range(p["V"] - 1)]
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


def _grammar_run(ctx: Context, p: dict, transitions, accepting, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    model, ids = toy({**p, "eos": -1}), prompt(ctx, p, 1)
    batch = ids.repeat(rows, 1)
    out = ctx.target(model, batch, transitions.to(ctx.device), accepting.to(ctx.device), p["V"] - 1, p["n"],
                     generator=torch.Generator(device=ctx.device).manual_seed(p["seed"]))
    return expect_ids(ctx, out, rows, batch, batch.shape[-1] + p["n"]), ids


@invariant("grammar_constrained_sample.text.accepted", examples=_grammar_examples(),
           statement="Every generated sequence stays in the automaton's language: no token leads to a dead state, EOS "
                     "only in an accepting state, EOS-padded after it.",
           source=f"{WILLARD}; transformers PrefixConstrainedLogitsProcessor")
def check_grammar_accepted(ctx: Context, p: dict) -> None:
    transitions, accepting = automaton(p)
    out, ids = _grammar_run(ctx, p, transitions, accepting, 256)
    eos = p["V"] - 1
    for generated in out[:, ids.shape[-1] :].tolist():
        ok, why = walk(transitions, accepting, generated, eos)
        if not ok:
            ctx.fail(f"generated {generated}: {why} (automaton {transitions.tolist()}, accepting "
                     f"{accepting.tolist()})", sequence=generated)
        if eos in generated and any(t != eos for t in generated[generated.index(eos) :]):
            ctx.fail(f"generated {generated}: tokens after EOS must be EOS (the pad)")


def _mask(transitions: torch.Tensor, accepting: torch.Tensor, eos: int):
    """The automaton's mask for sequence_distribution: the tokens allowed from the state each prefix reaches."""
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


@invariant(row("grammar_constrained_sample.permissive.equals_unconstrained", permissive=True,
               statement="With a permissive automaton (one accepting state, every token allowed) the continuations "
                         "follow unconstrained sampling's exact distribution: chi-square over every continuation, "
                         f"{DRAWS} draws, false-alarm rate {ALPHA:g}."),
           row("grammar_constrained_sample.distribution.renormalized", permissive=False,
               statement="Each step samples from the model's distribution restricted to the allowed tokens and "
                         f"renormalized: chi-square over every continuation, {DRAWS} draws, false-alarm rate "
                         f"{ALPHA:g}."),
           kind="statistical", budget=0.5, examples=_grammar_examples(), source=WILLARD)
def check_grammar_distribution(ctx: Context, p: dict, permissive: bool) -> None:
    eos = p["V"] - 1
    if permissive:
        transitions = torch.zeros(1, p["V"], dtype=torch.int64)
        transitions[:, eos] = -1
        accepting = torch.ones(1, dtype=torch.bool)
    else:
        transitions, accepting = automaton(p)
    out, ids = _grammar_run(ctx, p, transitions, accepting, DRAWS)
    generated = pad_to(out[:, ids.shape[-1] :], p["n"], eos)
    mask = None if permissive else _mask(transitions, accepting, eos)
    seqs, probs = sequence_distribution(toy({**p, "eos": -1}), ids[0], p["n"], eos, None, mask)
    assert_sequence_distribution(ctx, generated, seqs, probs, "permissive grammar vs unconstrained sampling"
                                 if permissive else "constrained sampling vs the renormalized masked distribution")
