"""Every invariant can fail: each mutant in tests/mutants is caught by `lmspec check` (exit code 1), by the
invariants named here, with a shrunk counterexample and a command that reproduces it."""

from __future__ import annotations

import json

import pytest

from lmspec.spec import components

from .conftest import check, run_cli

A = "tests.mutants.attention"
V = "tests.mutants.attention_variants"
S = "tests.mutants.softmax"

# (component, mutant, invariants that must catch it, options)
MUTANTS = [
    ("softmax", f"{S}:no_max_subtraction", {"softmax.stability.no_overflow"}, {}),
    ("softmax", f"{S}:wrong_axis", {"softmax.reference.matches", "softmax.normalization.sums_to_one"}, {}),
    ("softmax", f"{S}:log_softmax_instead", {"softmax.reference.matches", "softmax.normalization.sums_to_one"}, {}),
    ("softmax", f"{S}:sum_normalized", {"softmax.shift_invariance", "softmax.normalization.sums_to_one"}, {}),
    ("temperature_softmax", f"{S}:temperature_multiplies",
     {"temperature_softmax.reference.matches", "temperature_softmax.entropy.monotone", "temperature_softmax.limit.zero_is_argmax"}, {}),
    ("temperature_softmax", f"{S}:temperature_ignored",
     {"temperature_softmax.limit.zero_is_argmax", "temperature_softmax.limit.infinity_is_uniform"}, {}),
    ("attention", f"{A}:missing_scale", {"attention.reference.matches", "attention.scale.default_inv_sqrt_e"}, {}),
    ("attention", f"{A}:scale_one_over_e", {"attention.reference.matches", "attention.scale.default_inv_sqrt_e"}, {}),
    ("attention", f"{A}:causal_diagonal_excluded", {"attention.causal.visible_keys", "attention.convex_combination"}, {}),
    ("attention", f"{A}:causal_sees_next_token", {"attention.causal.visible_keys", "attention.causal.future_independence"}, {}),
    ("attention", f"{A}:softmax_over_queries", {"attention.reference.matches", "attention.convex_combination"}, {}),
    ("attention", f"{A}:no_max_subtraction", {"attention.mask.additive", "attention.gqa.matches_reference"}, {}),
    ("attention", f"{A}:gqa_groups_modulo", {"attention.gqa.equals_repeated_kv", "attention.gqa.matches_reference"}, {}),
    ("attention", f"{A}:causal_bottom_right", {"attention.causal.visible_keys", "attention.causal.future_independence"}, {}),
    ("attention", f"{A}:causal_top_left", {"attention.causal.visible_keys", "attention.reference.matches"},
     {"causal_alignment": "bottom_right"}),
    ("attention", f"{A}:bool_mask_inverted", {"attention.mask.boolean", "attention.mask.boolean_equals_additive"}, {}),
    ("attention", f"{A}:additive_mask_ignored", {"attention.mask.additive", "attention.mask.boolean_equals_additive"}, {}),
    ("attention", f"{A}:nan_for_fully_masked_rows", {"attention.mask.fully_masked_rows"}, {}),
    ("attention", f"{A}:drops_last_key", {"attention.permutation_invariance", "attention.reference.matches"}, {}),
    ("attention", f"{A}:dropout_not_rescaled", {"attention.dropout.unbiased"}, {}),
    ("attention", f"{A}:dropout_in_eval", {"attention.dropout.zero_is_identity", "attention.reference.matches"}, {}),
    ("multi_head_attention", f"{V}:mha_heads_split_transposed", {"mha.heads.fused_equals_per_head", "mha.reference.matches"}, {}),
    ("multi_head_attention", f"{V}:mha_gqa_modulo", {"mha.gqa.equals_repeated_kv", "mha.heads.fused_equals_per_head"}, {}),
    ("multi_head_attention", f"{V}:mha_assumes_ev_equals_e", {"mha.reference.value_dim_differs"}, {}),
    ("multi_head_attention", f"{V}:mha_ignores_causal",
     {"mha.causal.future_independence", "mha.heads.one_head_is_single_head_attention"}, {}),
    ("sliding_window_attention", f"{V}:window_one_too_wide", {"sliding_window.visible_keys", "sliding_window.reference.matches"}, {}),
    ("sliding_window_attention", f"{V}:window_one_too_narrow", {"sliding_window.visible_keys"}, {}),
    ("sliding_window_attention", f"{V}:window_bidirectional", {"sliding_window.large_window_is_causal"}, {}),
    ("cached_attention", f"{V}:cache_position_off_by_one", {"kv_cache.reference.matches", "kv_cache.decode_equals_full_forward"}, {}),
    ("cached_attention", f"{V}:cache_top_left", {"kv_cache.reference.matches", "kv_cache.decode_equals_full_forward"}, {}),
    ("cached_attention", f"{V}:cache_prepends", {"kv_cache.appends_in_order"}, {}),
    ("multi_head_latent_attention", f"{V}:mla_scale_ignores_rope_dim", {"mla.reference.matches"}, {}),
    ("multi_head_latent_attention", f"{V}:mla_rope_key_not_rotated", {"mla.reference.matches"}, {}),
    ("multi_head_latent_attention", f"{V}:mla_not_causal", {"mla.causal.future_independence"}, {}),
    ("multi_head_latent_attention", f"{V}:mla_heads_split_transposed", {"mla.heads.shared_rope_key"}, {}),
    # resource accounting (issue 7)
    ("param_count", "tests.mutants.accounting:layernorm_off_by_one", {"params.gpt2.closed_form", "params.published_totals"}, {}),
    ("param_count", "tests.mutants.accounting:untied_head_counted_as_tied", {"params.total.matches_module", "params.published_totals"}, {}),
    ("param_count", "tests.mutants.accounting:positions_not_embedding", {"params.embedding.split"}, {}),
    ("param_count", "tests.mutants.accounting:moe_active_is_total", {"params.moe.active"}, {}),
    ("param_count", "tests.mutants.accounting:meta_width_rounded_down", {"params.llama.ffn_rounding"}, {}),
    ("approx_params", "tests.mutants.accounting:approx_with_biases", {"params.approx.stated_error"}, {}),
    ("matmul_flops", "tests.mutants.accounting:matmul_without_factor_two", {"flops.matmul.counter"}, {}),
    ("attention_flops", "tests.mutants.accounting:attention_qk_only", {"flops.attention.counter_reference"}, {}),
    ("attention_flops", "tests.mutants.accounting:attention_exact_is_half", {"flops.attention.causal_conventions"}, {}),
    ("forward_flops", "tests.mutants.accounting:forward_without_head",
     {"flops.forward.counter_model", "flops.forward.two_n_plus_attention", "flops.forward.kaplan_table1"}, {}),
    ("forward_flops", "tests.mutants.accounting:forward_without_attention_core", {"flops.forward.per_layer", "flops.forward.counter_model"}, {}),
    ("forward_flops", "tests.mutants.accounting:forward_ignores_convention", {"flops.forward.causal_conventions", "flops.forward.kaplan_table1"}, {}),
    ("forward_flops", "tests.mutants.accounting:forward_attention_over_kv_heads", {"flops.forward.counter_model"}, {}),
    ("training_flops", "tests.mutants.accounting:backward_equals_forward",
     {"flops.training.counter_model", "flops.training.six_nd_plus_attention", "flops.training.megatron"}, {}),
    ("training_flops", "tests.mutants.accounting:recompute_includes_head", {"flops.training.recompute_full", "flops.training.megatron_recompute"}, {}),
    ("training_flops", "tests.mutants.accounting:selective_is_full", {"flops.training.recompute_selective"}, {}),
    ("utilization", "tests.mutants.accounting:utilization_swapped", {"compute.utilization.measured", "compute.utilization.hfu_at_least_mfu"}, {}),
    ("petaflop_days", "tests.mutants.accounting:pf_days_of_hours", {"compute.pf_days.definition", "compute.pf_days.gpt3"}, {}),
    ("chinchilla_optimal", "tests.mutants.accounting:chinchilla_without_six", {"compute.chinchilla.budget", "compute.chinchilla.published"}, {}),
    ("dense_peak_flops", "tests.mutants.accounting:sparse_peaks", {"compute.peaks.published", "compute.peaks.dense_not_sparse"}, {}),
    ("training_memory", "tests.mutants.accounting:megatron_grads_as_16", {"memory.recipe.bytes_per_param", "memory.recipe.measured_adamw"}, {}),
    ("training_memory", "tests.mutants.accounting:zero1_shards_gradients", {"memory.zero.stages"}, {}),
    ("activation_memory", "tests.mutants.accounting:activations_without_dropout_masks",
     {"memory.activations.measured", "memory.activations.korthikanti_table2"}, {}),
    ("activation_memory", "tests.mutants.accounting:activations_tp_splits_everything", {"memory.activations.korthikanti_table2"}, {}),
    ("kv_cache_bytes", "tests.mutants.accounting:kv_cache_without_factor_two",
     {"memory.kv_cache.measured_reference", "memory.kv_cache.measured_transformers"}, {}),
    ("mla_cache_bytes", "tests.mutants.accounting:mla_cache_without_rope_key", {"memory.mla_cache.measured_reference", "memory.mla_cache.deepseek_v2"}, {}),
    ("attention_memory_traffic", "tests.mutants.accounting:traffic_mqa_reads_full_cache",
     {"memory.traffic.shazeer_formulas", "memory.traffic.kv_heads_scale_cache_reads"}, {}),
    ("float_format", "tests.mutants.accounting:fp16_max_wrong", {"formats.layout.finfo", "formats.layout.bit_patterns"}, {}),
    ("float_cast", "tests.mutants.accounting:cast_truncates", {"formats.cast.matches_reference", "formats.cast.ties_to_even"}, {}),
    ("float_cast", "tests.mutants.accounting:cast_ties_away", {"formats.cast.ties_to_even"}, {}),
    ("float_cast", "tests.mutants.accounting:cast_e4m3_overflow_nan", {"formats.cast.overflow"}, {}),
    ("float_cast", "tests.mutants.accounting:cast_flushes_subnormals", {"formats.cast.underflow", "formats.cast.matches_reference"}, {}),
    ("absmax_quantize", "tests.mutants.accounting:quant_scale_128", {"quant.int8.round_trip", "quant.int8.range"}, {}),
    ("absmax_quantize", "tests.mutants.accounting:quant_truncates", {"quant.int8.round_trip"}, {}),
    ("absmax_quantize", "tests.mutants.accounting:quant_round_half_up", {"quant.int8.symmetric"}, {}),
    ("absmax_quantize", "tests.mutants.accounting:quant_full_int8_range", {"quant.int8.range"}, {}),
    ("contiguous_strides", "tests.mutants.accounting:strides_count_empty_dims", {"storage.strides.row_major"}, {}),
    ("tensor_view", "tests.mutants.accounting:view_copies", {"storage.view.shares_storage"}, {}),
    ("tensor_transpose", "tests.mutants.accounting:transpose_copies", {"storage.transpose.swaps_strides", "storage.transpose.breaks_contiguity"}, {}),
    ("tensor_contiguous", "tests.mutants.accounting:contiguous_always_copies", {"storage.contiguous.no_copy_when_contiguous"}, {}),
    ("tensor_contiguous", "tests.mutants.accounting:contiguous_returns_input", {"storage.contiguous.copies_when_needed"}, {}),
]


@pytest.mark.parametrize("component,mutant,catchers,options", MUTANTS, ids=[m[1].split(":")[1] for m in MUTANTS])
def test_mutant_is_caught(component, mutant, catchers, options):
    # float32 keeps the run short; overflow bugs show in float16 too (exp overflows at 11.1 there)
    dtypes = ["float32", "float16"] if "no_max_subtraction" in mutant else ["float32"]
    code, results = check(component, mutant, dtypes=dtypes, only=catchers, **options)
    assert code == 1
    for r in results:
        assert r.verdict == "fail" or r.dtype == "float16", f"{r.invariant} [{r.dtype}] did not catch {mutant}"
        if r.verdict == "fail":
            assert r.counterexample["params"] is not None and r.message
            assert r.reproduce.startswith(f"lmspec check {component} --target {mutant}") and "--replay" in r.reproduce


def test_every_invariant_has_a_mutant_that_it_catches():
    named = set().union(*(m[2] for m in MUTANTS))
    every = {inv.id for comp in components().values() for inv in comp.invariants}
    assert every - named == set(), "invariants no mutant is shown to break"


def test_correct_base_of_the_mutants_conforms():
    code, results = check("attention", f"{A}:correct")
    assert code == 0, [r.message for r in results if r.verdict != "pass"]


def test_cli_exits_1_and_its_reproduce_command_replays_the_counterexample():
    proc = run_cli("check", "attention", "--target", f"{A}:scale_one_over_e", "--invariant", "attention.reference.matches",
                   "--dtype", "float32", "--report", "/dev/stdout")
    assert proc.returncode == 1, proc.stderr
    assert "FAIL  attention.reference.matches [float32]" in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if l.strip().startswith("counterexample:"))
    params = json.loads(line.split("counterexample:", 1)[1])
    replay = run_cli("check", "attention", "--target", f"{A}:scale_one_over_e", "--invariant", "attention.reference.matches",
                     "--dtype", "float32", "--replay", json.dumps(params))
    assert replay.returncode == 1 and "1 examples" in replay.stdout
    fixed = run_cli("check", "attention", "--target", "torch.nn.functional:scaled_dot_product_attention", "--invariant",
                    "attention.reference.matches", "--dtype", "float32", "--replay", json.dumps(params))
    assert fixed.returncode == 0, fixed.stdout
