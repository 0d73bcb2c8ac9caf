"""ModelSpec: parameter counts against published totals, KV sizes, HF config loading."""

from pathlib import Path

import pytest

from inferecon.core.errors import UserError
from inferecon.model.catalog import MODELS, get_model, resolve_model
from inferecon.model.spec import ModelSpec

FIX = Path(__file__).parent / "fixtures" / "hf"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_total_params_match_published_within_0_4pct(name):
    # Published totals carry three or four significant digits (70.6B, 46.7B, 405B): 0.4% is
    # what the README claims and what the shapes give.
    m = MODELS[name]
    assert m.published_params_b is not None
    assert m.total_params / 1e9 == pytest.approx(m.published_params_b, rel=0.004)


@pytest.mark.parametrize("name", [n for n in sorted(MODELS) if MODELS[n].published_active_params_b])
def test_active_params_match_published_within_2pct(name):
    # Active counts are published to two digits (37B, 22B, 39B): ±1.4% of rounding alone.
    m = MODELS[name]
    assert m.active_params / 1e9 == pytest.approx(m.published_active_params_b, rel=0.02)


def test_catalog_models_carry_their_native_precision():
    # DeepSeek-V3 is released with FP8 weights (technical report, §3.3); Llama 3 in BF16.
    assert MODELS["deepseek-v3"].weight_bits == 8
    assert MODELS["llama-3-70b"].weight_bits == 16


def test_catalog_has_the_issue_models():
    for n in ["llama-3-8b", "llama-3-70b", "llama-3.1-405b", "mixtral-8x7b", "mixtral-8x22b", "mistral-large-2",
              "deepseek-v3", "qwen3-32b", "qwen3-235b-a22b", "gpt-3-175b"]:
        assert n in MODELS


def test_kv_cache_sizes_by_hand():
    # GQA: 2 (K,V) x 8 kv heads x 128 x 2 bytes x 80 layers = 327,680 B per token.
    assert get_model("llama-3-70b").kv_bytes(context=1) == 327_680
    # MLA caches the 512-wide latent plus the 64-wide rotary key: 576 x 2 B x 61 layers.
    assert get_model("deepseek-v3").kv_bytes(context=1) == 576 * 2 * 61
    # MHA (GPT-3): 2 x 96 x 128 x 2 B x 96 layers; 8-bit KV halves it.
    g = get_model("gpt-3-175b")
    assert g.kv_bytes(1) == 2 * 96 * 128 * 2 * 96
    assert g.with_precision(kv_bits=8).kv_bytes(1) == g.kv_bytes(1) / 2
    assert get_model("llama-3-8b").kv_bytes(context=1000, batch=3) == 3 * 1000 * 2 * 8 * 128 * 2 * 32


def test_precision_changes_weight_bytes():
    m = get_model("llama-3-70b")
    assert m.weight_bytes == pytest.approx(2 * m.total_params)
    assert m.with_precision(8).weight_bytes == pytest.approx(m.total_params)
    assert m.with_precision(4).weight_bytes == pytest.approx(m.total_params / 2)
    with pytest.raises(UserError, match="weight precision"):
        m.with_precision(3)


def test_flops_per_token_counts_matmuls_and_attention():
    m = get_model("llama-3-8b")
    non_embedding = m.total_params - m.embedding_params  # lm head is untied: counted once
    assert m.matmul_flop_per_token == pytest.approx(2 * non_embedding)
    assert m.attention_flop_per_token(1000) == 4 * 32 * 128 * 1000 * 32


@pytest.mark.parametrize("fixture,name", [("llama-3-8b.json", "llama-3-8b"), ("mixtral-8x7b.json", "mixtral-8x7b"),
                                          ("deepseek-v3.json", "deepseek-v3"),
                                          ("qwen3-235b-a22b.json", "qwen3-235b-a22b")])
def test_hf_config_matches_catalog(fixture, name):
    loaded = ModelSpec.from_hf_config(FIX / fixture)
    ref = MODELS[name]
    assert loaded.total_params == ref.total_params
    assert loaded.active_params == ref.active_params
    assert loaded.kv_bytes_per_token_layer == ref.kv_bytes_per_token_layer


def test_resolve_model_accepts_a_path_or_a_folder(tmp_path):
    (tmp_path / "config.json").write_text((FIX / "llama-3-8b.json").read_text())
    assert resolve_model(str(tmp_path)).total_params == MODELS["llama-3-8b"].total_params
    assert resolve_model(str(FIX / "llama-3-8b.json")).n_layers == 32


@pytest.mark.parametrize("fixture,msg", [("truncated.json", "not valid JSON"), ("badtype.json", "must be a (whole )?number"),
                                         ("missing.json", "missing num_hidden_layers"),
                                         ("nope.json", "no such config.json")])
def test_malformed_config_is_a_user_error(fixture, msg):
    with pytest.raises(UserError, match=msg):
        ModelSpec.from_hf_config(FIX / fixture)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UserError, match="did you mean llama-3-70b"):
        get_model("llama-3-7b")


def test_a_name_offered_twice_is_suggested_once():
    # calibrate --op-db --gpu h900 offered the database's GPUs and the published profiles, both
    # holding h200: "did you mean h200, h200, h100-sxm?".
    from inferecon.core.errors import suggest

    got = suggest("h900", ["h200", "b200", "h200", "h100-sxm"])
    assert got.count("h200") == 1 and got == suggest("h900", ["h200", "b200", "h100-sxm"])
