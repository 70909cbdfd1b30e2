"""samoyeds.hf.sparsify on transformers models built from their configs
with random weights: logits against the same model running the pruned
weights densely. Skipped without PyTorch, transformers or a CUDA device."""
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import copy  # noqa: E402
import re  # noqa: E402

import samoyeds  # noqa: E402
import samoyeds.hf  # noqa: E402
from samoyeds.pattern import prune  # noqa: E402

SMALL = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
             vocab_size=512, max_position_embeddings=256)


def mixtral():
    return transformers.MixtralConfig(intermediate_size=384, num_local_experts=8, num_experts_per_tok=2, **SMALL)


def qwen3_moe():
    return transformers.Qwen3MoeConfig(moe_intermediate_size=384, intermediate_size=768, num_experts=8,
                                       num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
                                       mlp_only_layers=[], **SMALL)


def model_with_pruned_experts(config):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).cuda().eval()
    found = 0
    for module in model.modules():
        if hasattr(module, "gate_up_proj") and hasattr(module, "down_proj"):
            module.gate_up_proj.data = prune(module.gate_up_proj.data)  # gate and up rows: groups of 2 never straddle
            module.down_proj.data = prune(module.down_proj.data)
            found += 1
    assert found == config.num_hidden_layers
    return model


def rel_err(got, want):
    return float((got.float() - want.float()).norm() / want.float().norm())


@pytest.mark.parametrize("make", [mixtral, qwen3_moe], ids=["mixtral", "qwen3_moe"])
def test_sparsified_logits_match_the_pruned_dense_model(make):
    print("transformers", transformers.__version__)
    model = model_with_pruned_experts(make())
    ids = torch.randint(0, 512, (2, 33), device="cuda")
    with torch.no_grad():
        want = model(ids).logits
        samoyeds.hf.sparsify(model, strict=True)
        assert model.config._experts_implementation == "samoyeds"
        got = model(ids).logits
        samoyeds.hf.check_errors(model)
        assert rel_err(got, want) < 1e-2
        compiled = torch.compile(model)
        assert rel_err(compiled(ids).logits, want) < 1e-2
        # A captured CUDA graph of the whole forward, warmed on its stream.
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            model(ids)
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            out = model(ids).logits
        graph.replay()
        torch.cuda.synchronize()
        assert rel_err(out, want) < 1e-2


def test_fp8_experts_stay_within_the_fp8_limit_of_the_pruned_dense_model():
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("FP8 experts need sm_90a")
    model = model_with_pruned_experts(mixtral())
    twin = copy.deepcopy(model)
    ids = torch.randint(0, 512, (2, 33), device="cuda")
    with torch.no_grad():
        want = model(ids).logits
        samoyeds.hf.sparsify(model, strict=True, fp8_experts=True)  # verified, then quantized
        samoyeds.hf.sparsify(twin, strict=True)
        got, bf16 = model(ids).logits, twin(ids).logits
        samoyeds.hf.check_errors(model)
    fp8_err, bf16_err = rel_err(got, want), rel_err(bf16, want)
    print(f"logits from the pruned dense model: FP8 experts {fp8_err:.4f}, bf16 experts {bf16_err:.4f}")
    # FP8's own error (docs/fp8.md): a few percent; and the FP8 path did run.
    assert fp8_err < 0.1
    assert fp8_err > 2 * bf16_err
    layers = [m.samoyeds_moe for m in model.modules() if hasattr(m, "samoyeds_moe")]
    assert layers and all(layer.config.fp8_experts for layer in layers)


def test_fp8_experts_refuse_what_they_cannot_run_before_changing_the_model():
    model = model_with_pruned_experts(mixtral())
    with pytest.raises(ValueError, match="1:2 row groups at V = 128"):
        samoyeds.hf.sparsify(model, V=64, fp8_experts=True)
    with pytest.raises(NotImplementedError, match="packed checkpoint"):
        samoyeds.hf.sparsify(model, packed="/nonexistent", fp8_experts=True)
    half = model_with_pruned_experts(mixtral()).half()
    with pytest.raises(ValueError, match="bfloat16"):
        samoyeds.hf.sparsify(half, fp8_experts=True)
    assert not any(hasattr(m, "samoyeds_moe") for m in model.modules())
    assert not any(hasattr(m, "samoyeds_moe") for m in half.modules())


def test_a_packed_checkpoint_loads_the_layers_packing_in_memory_builds(tmp_path):
    st = pytest.importorskip("safetensors.torch", reason="safetensors is not installed")
    model = transformers.AutoModelForCausalLM.from_config(qwen3_moe(), dtype=torch.bfloat16).cuda().eval()
    # The experts as a Qwen3-MoE checkpoint names them on disk: one matrix per expert and projection.
    tensors = {}
    for name, module in model.named_modules():
        if hasattr(module, "gate_up_proj"):
            layer = int(re.search(r"layers\.(\d+)\.", name)[1])
            inter = module.gate_up_proj.shape[1] // 2
            for e in range(module.gate_up_proj.shape[0]):
                p = f"model.layers.{layer}.mlp.experts.{e}."
                tensors[p + "gate_proj.weight"] = module.gate_up_proj[e, :inter].contiguous().cpu()
                tensors[p + "up_proj.weight"] = module.gate_up_proj[e, inter:].contiguous().cpu()
                tensors[p + "down_proj.weight"] = module.down_proj[e].contiguous().cpu()
    (tmp_path / "dense").mkdir()
    st.save_file(tensors, str(tmp_path / "dense" / "model.safetensors"), metadata={"format": "pt"})
    samoyeds.pack_checkpoint(str(tmp_path / "dense"), str(tmp_path / "packed"))
    twin = copy.deepcopy(model)
    ids = torch.randint(0, 512, (2, 17), device="cuda")
    with torch.no_grad():
        samoyeds.hf.sparsify(model)  # magnitude pruning in memory
        samoyeds.hf.sparsify(twin, packed=str(tmp_path / "packed"))
        assert torch.equal(twin(ids).logits, model(ids).logits)


def test_gpt_oss_sparsified_logits_match_its_pruned_dense_model():
    config = transformers.GptOssConfig(intermediate_size=256, num_local_experts=8, num_experts_per_tok=2,
                                       **SMALL)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).cuda().eval()
    for module in model.modules():
        if type(module).__name__ == "GptOssExperts":
            with torch.no_grad():  # prune in the layer's [out, in] view, written back to gpt-oss's layout
                gu = module.gate_up_proj.data
                for start in (0, 1):
                    gu[..., start::2] = prune(gu[..., start::2].transpose(1, 2)).transpose(1, 2)
                module.down_proj.data = prune(module.down_proj.data.transpose(1, 2)).transpose(1, 2).contiguous()
                module.gate_up_proj_bias.normal_(0.0, 1.0)
                module.down_proj_bias.normal_(0.0, 0.1)
    ids = torch.randint(0, 512, (2, 33), device="cuda")
    with torch.no_grad():
        want = model(ids).logits
        samoyeds.hf.sparsify(model, strict=True)
        got = model(ids).logits
        samoyeds.hf.check_errors(model)
    assert rel_err(got, want) < 1e-2
