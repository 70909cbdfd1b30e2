"""What needs PyTorch (and transformers) but no GPU: the pruner's pattern and
the refusals of samoyeds.hf. Skipped without PyTorch."""
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")

from samoyeds.handles import Sparsity  # noqa: E402
from samoyeds.pattern import prune  # noqa: E402


@pytest.mark.parametrize("V,N,M", [(128, 1, 2), (64, 2, 4), (32, 1, 1)])
def test_prune_keeps_n_of_m_rows_per_segment_and_two_of_four(V, N, M):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4 * M + M // 2 if M > 1 else 9, 2 * V + 12, generator=g).to(torch.bfloat16)
    p = prune(w, Sparsity(V, N, M))
    assert p.shape == w.shape and p.dtype == w.dtype
    kept = p != 0
    assert torch.equal(p[kept], w[kept])  # kept values are exact
    cols = torch.nn.functional.pad(kept, (0, (-w.shape[-1]) % V))
    assert int(cols.reshape(*cols.shape[:-1], -1, 4).sum(-1).max()) <= 2
    rows = torch.nn.functional.pad(cols, (0, 0, 0, (-w.shape[-2]) % M))
    seg_rows = rows.reshape(3, -1, M, rows.shape[-1] // V, V).any(-1)  # [E, groups, M, segments]
    assert int(seg_rows.sum(2).max()) <= N
    assert prune(p, Sparsity(V, N, M)).equal(p)  # idempotent


def test_prune_keeps_the_larger_magnitudes_and_the_lower_index_on_ties():
    w = torch.tensor([[1.0, -3.0, 2.0, -2.0] * 32, [0.5] * 128])  # row 0 has the larger norm
    p = prune(w, Sparsity(128, 1, 2))
    assert p[0, :4].tolist() == [0.0, -3.0, 2.0, 0.0]  # |2| = |-2|: the lower column
    assert not p[1].any()


def test_hf_refuses_what_it_cannot_run_before_anything_changes(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    import samoyeds.hf
    config = transformers.GptOssConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                       num_local_experts=4, num_experts_per_tok=2, vocab_size=64)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    before = model.config._experts_implementation
    with pytest.raises(NotImplementedError, match="float32 weights"):
        samoyeds.hf.sparsify(model)  # gpt-oss runs, but in 16-bit
    with pytest.raises(NotImplementedError, match="gpt-oss from a packed checkpoint"):
        samoyeds.hf.sparsify(model.to(torch.bfloat16), packed=str(tmp_path))
    assert model.config._experts_implementation == before
    assert not any(hasattr(m, "samoyeds_moe") for m in model.modules())
    with pytest.raises(ValueError, match="no transformers experts module"):
        samoyeds.hf.sparsify(torch.nn.Linear(4, 4))


def test_the_ops_are_registered_with_their_schemas():
    import samoyeds.ops  # noqa: F401
    schema = str(torch.ops.samoyeds.moe_forward_routed.default._schema)
    assert "Tensor(a!) y" in schema and "Tensor(b!) workspace" in schema and "int layer" in schema
    for name in ("ssmm", "gated_up", "down_combine", "moe_forward", "moe_forward_routed"):
        assert hasattr(torch.ops.samoyeds, name)
    # A handle that is not live is refused before any pointer is touched.
    x = torch.zeros(1, 8, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="not a live MoeLayer"):
        samoyeds.ops._check_layer(4096, x, x, torch.zeros(1, dtype=torch.uint8), torch.zeros(1, dtype=torch.int32))


def test_save_packed_writes_what_sparsify_loads(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    import samoyeds.hf
    from samoyeds.checkpoint import PackedCheckpoint
    config = transformers.MixtralConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                        num_local_experts=4, num_experts_per_tok=2, vocab_size=64)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    samoyeds.hf.save_packed(model, str(tmp_path / "packed"), V=64)
    ckpt = PackedCheckpoint(str(tmp_path / "packed"))
    assert ckpt.sparsity == Sparsity(64, 1, 2)
    assert sorted(ckpt.experts) == [("model.", 0), ("model.", 1)]
    assert sorted(ckpt.experts[("model.", 1)]) == [0, 1, 2, 3]
    assert (tmp_path / "packed" / "config.json").exists()
    assert ckpt.shape(ckpt.experts[("model.", 1)][2]["w2"]) == (64, 64)
    for module in model.modules():
        if hasattr(module, "gate_up_proj"):
            module.gate_up_proj.data = torch.empty(0, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="no dense weights left"):
        samoyeds.hf.save_packed(model, str(tmp_path / "again"))
