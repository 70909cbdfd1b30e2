"""samoyeds.hf: run a transformers 5.x model's routed experts on samoyeds.

transformers 5 routes each MoE block itself and hands the experts module
(gate_up_proj [E, 2I, H] with the gate first, down_proj [E, H, I]) the
tokens [T, H], their top-k expert ids and weights through an experts
implementation chosen by name. sparsify() packs every experts module once
and selects "samoyeds" for the model; routing and shared experts stay the
model's own.
"""
from __future__ import annotations

import re
import tempfile

import torch

from . import ops
from .checkpoint import PackedCheckpoint, pack_checkpoint
from .handles import Sparsity, runtime
from .nn import SparseMoE

NAME = "samoyeds"


def _experts_forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                     top_k_weights: torch.Tensor) -> torch.Tensor:
    moe = getattr(self, "samoyeds_moe", None)
    if moe is None:
        raise RuntimeError("samoyeds: this experts module was not packed; call samoyeds.hf.sparsify(model) first")
    return moe.forward_routed(hidden_states, top_k_index, top_k_weights)


def _register() -> None:
    from transformers.integrations import moe as hf_moe
    if hasattr(hf_moe.ExpertsInterface, "register"):
        hf_moe.ExpertsInterface.register(NAME, _experts_forward)
    else:  # an interface without the classmethod: its global mapping
        hf_moe.ALL_EXPERTS_FUNCTIONS[NAME] = _experts_forward


def _experts_modules(model: torch.nn.Module):
    """(name, module) of every experts module transformers lets an implementation replace."""
    for name, module in model.named_modules():
        if hasattr(module, "gate_up_proj") and hasattr(module, "down_proj") and hasattr(module, "is_transposed"):
            yield name, module


def _is_gpt_oss(module) -> bool:
    """gpt-oss's experts: gate and up interleaved in an [E, H, 2I] (in, out) tensor, biases, the clamped SwiGLU."""
    return (type(module).__name__ == "GptOssExperts" and getattr(module, "is_transposed", False)
            and hasattr(module, "gate_up_proj_bias") and hasattr(module, "down_proj_bias"))


def _gpt_oss_refusal(module) -> str | None:
    w, d = module.gate_up_proj, module.down_proj
    if w.dim() != 3 or w.shape[2] % 2 or d.shape != (w.shape[0], w.shape[2] // 2, w.shape[1]):
        return f"gpt-oss gate_up_proj {list(w.shape)} with down_proj {list(d.shape)}"
    if w.dtype not in (torch.float16, torch.bfloat16):
        return f"{w.dtype} weights (the kernels take float16 or bfloat16; dequantize MXFP4 first)"
    return None


def _refusal(module) -> str | None:
    """Why the library cannot compute this experts module as the model does, or None."""
    cfg = getattr(module, "config", None)
    if _is_gpt_oss(module):
        return _gpt_oss_refusal(module)
    if getattr(module, "is_transposed", False) or getattr(module, "has_bias", False):
        return "experts with another layout or biases than Mixtral-style or gpt-oss's"
    if not getattr(module, "has_gate", True) or not getattr(module, "is_concatenated", True):
        return "experts without a concatenated gate and up projection"
    if getattr(module, "has_post_expert_norm", False):
        return "experts with a norm after the expert"
    act = getattr(cfg, "hidden_act", "silu")
    if act not in ("silu", "swish"):
        return f"hidden_act {act!r} (the kernels compute SiLU-gated experts)"
    w = module.gate_up_proj
    if w.dim() != 3 or w.shape[1] % 2 or module.down_proj.shape != (w.shape[0], w.shape[2], w.shape[1] // 2):
        return f"gate_up_proj {list(w.shape)} with down_proj {list(module.down_proj.shape)}"
    if w.dtype not in (torch.float16, torch.bfloat16):
        return f"{w.dtype} weights (the kernels take float16 or bfloat16)"
    return None


def _top_k(module) -> int:
    cfg = module.config
    for key in ("num_experts_per_tok", "top_k", "moe_topk"):
        if getattr(cfg, key, None):
            return int(getattr(cfg, key))
    raise ValueError("samoyeds: the model's config names no top-k (num_experts_per_tok)")


def sparsify(model: torch.nn.Module, V: int = 128, N: int = 1, M: int = 2, *, strict: bool = False,
             keep_dense: bool = False, packed: str | None = None, fp8_experts: bool = False,
             device=None) -> torch.nn.Module:
    """Packs every MoE experts module of `model` (in place) and selects the samoyeds implementation.

    strict=True: the weights already follow the pattern (samoyeds.prune); verify, never prune.
    packed: a packed checkpoint folder of this model (samoyeds pack, samoyeds.checkpoint): its experts
    are loaded as packed, nothing is pruned, and its pattern replaces V, N, M.
    keep_dense=False frees the dense expert weights once packed. fp8_experts=True: the routed experts in
    FP8 e4m3 with 128 x 128 block scales (experimental: sm_90a, bfloat16, silu, 1:2 at V = 128;
    docs/fp8.md). Refuses, before changing anything, a model with an experts module whose computation the
    library does not implement.
    """
    found = list(_experts_modules(model))
    if not found:
        raise ValueError("samoyeds: no transformers experts module (gate_up_proj, down_proj) in this model")
    refused = [(n, r) for n, m in found if (r := _refusal(m)) is not None]
    if refused:
        name, why = refused[0]
        raise NotImplementedError(f"samoyeds: cannot run {name} ({len(refused)} such modules): {why}")
    if packed is not None and any(_is_gpt_oss(m) for _, m in found):
        raise NotImplementedError("samoyeds: gpt-oss from a packed checkpoint (its biases) is not built yet")
    if fp8_experts:
        _check_fp8(found, packed, (V, N, M))
    _register()
    sparsity = Sparsity(V, N, M)
    checkpoint = PackedCheckpoint(packed) if packed is not None else None
    for name, module in found:
        w = module.gate_up_proj.data
        inter = w.shape[1] // 2
        ep = bool(getattr(module, "_is_expert_parallel", False))
        dev = torch.device(device) if device is not None else (
            w.device if w.is_cuda else torch.device("cuda", torch.cuda.current_device()))
        if _is_gpt_oss(module):
            moe = _gpt_oss_experts(module, sparsity, strict, ep, dev)
        elif checkpoint is not None:
            moe = _load_packed(checkpoint, name, module, dev, ep)
        else:
            moe = SparseMoE(w[:, :inter], w[:, inter:], module.down_proj.data, top_k=_top_k(module),
                            sparsity=sparsity, strict=strict, expert_parallel=ep, fp8_experts=fp8_experts,
                            device=dev)
        module.add_module("samoyeds_moe", moe)
        if not keep_dense:
            for pname in ("gate_up_proj", "down_proj"):
                getattr(module, pname).data = torch.empty(0, dtype=w.dtype, device=w.device)
    _select(model)
    return model


def _check_fp8(found, packed, pattern) -> None:
    """What the FP8 experts do not take yet, refused before any module changes (the layer would refuse
    it only at the first module)."""
    if packed is not None:
        raise NotImplementedError("samoyeds: FP8 experts from a packed checkpoint are not loaded yet")
    if pattern != (128, 1, 2):
        raise ValueError(f"samoyeds: FP8 experts are 1:2 row groups at V = 128, not V={pattern[0]} "
                         f"{pattern[1]}:{pattern[2]}")
    for name, module in found:
        if _is_gpt_oss(module):
            raise NotImplementedError(f"samoyeds: {name}: FP8 experts join gate and up as silu(g) * u only, "
                                      "not gpt-oss's clamped SwiGLU with biases")
        if getattr(module, "_is_expert_parallel", False):
            raise NotImplementedError(f"samoyeds: {name}: FP8 experts are not expert-parallel yet")
        if module.gate_up_proj.dtype != torch.bfloat16:
            raise ValueError(f"samoyeds: {name}: FP8 experts take bfloat16 weights and activations, not "
                             f"{module.gate_up_proj.dtype}")


def _gpt_oss_experts(module, sparsity, strict, ep, dev) -> SparseMoE:
    """gpt-oss's experts as the layer takes them: its [E, H, 2I] gate_up_proj (gate in the even
    columns) and [E, I, H] down_proj transposed to [out, in] matrices, the biases split the same way."""
    gu, bias = module.gate_up_proj.data, module.gate_up_proj_bias.data
    w1 = gu[..., 0::2].transpose(1, 2).contiguous()
    w3 = gu[..., 1::2].transpose(1, 2).contiguous()
    w2 = module.down_proj.data.transpose(1, 2).contiguous()
    return SparseMoE(w1, w3, w2, top_k=_top_k(module), sparsity=sparsity, strict=strict, expert_parallel=ep,
                     activation="clamped_swiglu", swiglu_alpha=float(getattr(module, "alpha", 1.702)),
                     swiglu_limit=float(getattr(module, "limit", 7.0)),
                     biases=(bias[:, 0::2], bias[:, 1::2], module.down_proj_bias.data), device=dev)


def _load_packed(checkpoint: PackedCheckpoint, name: str, module, dev: torch.device, ep: bool) -> SparseMoE:
    """The packed experts of the module `name`, found by its layer number (and the text before it, where
    a checkpoint holds several stacks), checked against the module's own shape and dtype."""
    if ep:
        raise NotImplementedError("samoyeds: loading one expert-parallel rank's experts from a packed checkpoint")
    where = re.match(r"^(.*?)layers\.(\d+)\.", name)
    if where is None:
        raise ValueError(f"samoyeds: {name}: no layer number to find its packed experts by")
    with torch.cuda.device(dev):
        layer = checkpoint.layer(runtime(dev.index), checkpoint.key(int(where[2]), where[1]), top_k=_top_k(module))
    c, w = layer.config, module.gate_up_proj
    want = (w.shape[0], w.shape[1] // 2, w.shape[2], ops._DTYPES[w.dtype])
    if (c.experts, c.ffn, c.hidden, c.dtype) != want:
        raise ValueError(f"samoyeds: {name}: the packed checkpoint's layer has {c.experts} experts of [{c.ffn}, "
                         f"{c.hidden}] {c.dtype}; the module {want[0]} of [{want[1]}, {want[2]}] {want[3]}")
    return SparseMoE.from_layer(layer, dev)


def _select(model: torch.nn.Module) -> None:
    # From transformers 5.7 the name is validated against the registered ones;
    # earlier 5.x accept only their built-in names through the setter.
    try:
        model.set_experts_implementation(NAME)
    except (ValueError, KeyError, AttributeError):
        for module in model.modules():
            cfg = getattr(module, "config", None)
            if cfg is not None and hasattr(cfg, "_experts_implementation_internal"):
                cfg._experts_implementation_internal = NAME


def save_packed(model: torch.nn.Module, path: str, V: int = 128, N: int = 1, M: int = 2, *,
                strict: bool = False) -> None:
    """Writes `model` as a packed checkpoint folder (what sparsify(model, packed=path) loads): the model's own
    save_pretrained (the per-expert names of its checkpoint format), then the library's packer. Needs the
    dense expert weights: call it before sparsify, or after sparsify(keep_dense=True)."""
    for name, module in _experts_modules(model):
        if module.gate_up_proj.numel() == 0:
            raise ValueError(f"samoyeds: {name} has no dense weights left (sparsify frees them unless keep_dense=True)")
    with tempfile.TemporaryDirectory(prefix="samoyeds-dense-") as dense:
        model.save_pretrained(dense)
        pack_checkpoint(dense, path, Sparsity(V, N, M), strict=strict)


def check_errors(model: torch.nn.Module) -> None:
    """Synchronizes and raises if any packed layer's kernels flagged an error (an id out of range)."""
    for module in model.modules():
        if isinstance(module, SparseMoE):
            module.check_errors()
