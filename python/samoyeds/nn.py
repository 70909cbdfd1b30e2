"""samoyeds.nn.SparseMoE: a MoE layer's experts pruned to the dual-side
pattern, packed once, and run by the library's routing and kernels."""
from __future__ import annotations

import torch

from . import ops
from .handles import MoeConfig, MoeLayer, Sparsity, runtime


def _expert_ptrs(w: torch.Tensor, name: str, rows: int, cols: int, experts: int) -> list[int]:
    """Each expert's address in a [E, rows, cols] tensor whose [rows, cols] blocks are row-major
    (a slice such as gate_up_proj[:, :I] qualifies: the experts need not be adjacent)."""
    if w.dim() != 3 or tuple(w.shape) != (experts, rows, cols):
        raise ValueError(f"samoyeds: {name} must have shape [{experts}, {rows}, {cols}], not {list(w.shape)}")
    if w.stride(2) != 1 or w.stride(1) != cols:
        raise ValueError(f"samoyeds: each expert of {name} must be a row-major [{rows}, {cols}] block")
    step = w.stride(0) * w.element_size()
    return [w.data_ptr() + e * step for e in range(experts)]


def choice_bias_values(choice_bias) -> list[float] | None:
    """A choice bias (e_score_correction_bias) of any shape or container as plain floats, or None."""
    return None if choice_bias is None else [float(b) for b in torch.as_tensor(choice_bias).flatten().tolist()]


class SparseMoE(torch.nn.Module):
    """Experts w1 (gate), w3 (up) [E, ffn, hidden] and w2 (down) [E, hidden, ffn], 16-bit, on a CUDA
    device or the host; packed onto `device` (default: the weights' CUDA device, else the current one).

    forward(x, router_logits) routes on the GPU by `routing` (softmax_topk, sigmoid_group_topk,
    topk_softmax; docs/models.md); forward_routed(x, topk_ids, topk_weights) takes the caller's routing.
    shared: optional (w1, w3, w2) of always-on experts, [S, shared_ffn, hidden] and [S, hidden, shared_ffn];
    shared_gate: [hidden] (Qwen2-MoE: the one shared expert scaled by sigmoid(shared_gate . x)).
    strict=True verifies that the weights already follow the pattern instead of pruning them.
    expert_parallel=True: this module holds some of the model's experts; routed ids outside [0, E)
    (other ranks' experts, or -1) add nothing without raising the error bit.
    activation="clamped_swiglu" (gpt-oss) with biases=(b1 [E, ffn], b3 [E, ffn], b2 [E, hidden]), same
    dtype and device as the weights.
    fp8_experts=True: the routed experts in FP8 e4m3 with 128 x 128 block scales (experimental: sm_90a,
    bfloat16 weights, silu; docs/fp8.md).
    """

    def __init__(self, w1, w3, w2, *, top_k: int, routing: str = "softmax_topk", renormalize: bool = False,
                 groups: int = 1, topk_groups: int = 1, routed_scaling_factor: float = 1.0, choice_bias=None,
                 shared=None, shared_gate=None, sparsity: Sparsity = Sparsity(), strict: bool = False,
                 expert_parallel: bool = False, activation: str = "silu", swiglu_alpha: float = 1.702,
                 swiglu_limit: float = 7.0, biases=None, fp8_experts: bool = False, device=None,
                 cache_path: str | None = None):
        super().__init__()
        if w1.dtype not in ops._DTYPES or w3.dtype != w1.dtype or w2.dtype != w1.dtype:
            raise ValueError("samoyeds: expert weights must all be float16 or all bfloat16")
        others = [w3, w2] + (list(shared) if shared is not None else []) + (list(biases) if biases else [])
        if any(t.device != w1.device for t in others):
            raise ValueError(f"samoyeds: expert weights must all be on one device (w1 is on {w1.device})")
        experts, ffn, hidden = w1.shape
        dev = torch.device(device) if device is not None else (
            w1.device if w1.is_cuda else torch.device("cuda", torch.cuda.current_device()))
        rt = runtime(dev.index if dev.index is not None else torch.cuda.current_device(), cache_path)
        on_device = w1.is_cuda
        ptrs = [_expert_ptrs(w1, "w1", ffn, hidden, experts), _expert_ptrs(w3, "w3", ffn, hidden, experts),
                _expert_ptrs(w2, "w2", hidden, ffn, experts)]
        shared_ptrs, n_shared, shared_ffn = None, 0, 0
        if shared is not None:
            s1, s3, s2 = shared
            n_shared, shared_ffn = s1.shape[0], s1.shape[1]
            if s1.is_cuda != on_device or s1.dtype != w1.dtype:
                raise ValueError("samoyeds: shared experts must be on the same side (host or device) and dtype")
            shared_ptrs = [_expert_ptrs(s1, "shared w1", shared_ffn, hidden, n_shared),
                           _expert_ptrs(s3, "shared w3", shared_ffn, hidden, n_shared),
                           _expert_ptrs(s2, "shared w2", hidden, shared_ffn, n_shared)]
        gate_ptr = None
        if shared_gate is not None:
            shared_gate = shared_gate.reshape(-1).to(w1.dtype).contiguous()
            shared_gate = shared_gate.to(w1.device)
            if shared_gate.numel() != hidden:
                raise ValueError(f"samoyeds: shared_gate must have {hidden} values")
            gate_ptr = shared_gate.data_ptr()
        bias = choice_bias_values(choice_bias)
        bias_ptrs = None
        if biases is not None:
            b1, b3, b2 = (b.to(w1.dtype).contiguous() for b in biases)
            if b1.shape != (experts, ffn) or b3.shape != (experts, ffn) or b2.shape != (experts, hidden):
                raise ValueError(f"samoyeds: biases must be [{experts}, {ffn}], [{experts}, {ffn}], [{experts}, {hidden}]")
            self._biases = (b1, b3, b2)  # alive until the layer has copied them
            bias_ptrs = [[t.data_ptr() + e * t.stride(0) * t.element_size() for e in range(experts)]
                         for t in self._biases]
        self.config = MoeConfig(hidden=hidden, ffn=ffn, experts=experts, top_k=top_k, dtype=ops._DTYPES[w1.dtype],
                                sparsity=sparsity, routing=routing, renormalize=renormalize, groups=groups,
                                topk_groups=topk_groups, routed_scaling_factor=routed_scaling_factor,
                                n_shared=n_shared, shared_ffn=shared_ffn, expert_parallel=expert_parallel,
                                activation=activation, swiglu_alpha=swiglu_alpha, swiglu_limit=swiglu_limit,
                                fp8_experts=fp8_experts)
        with torch.cuda.device(dev):
            layer = MoeLayer(rt, self.config, *ptrs, on_device=on_device, strict=strict, shared=shared_ptrs,
                             choice_bias=bias, shared_gate=gate_ptr, biases=bias_ptrs)
        self._biases = None
        self._adopt(layer, dev)

    @classmethod
    def from_layer(cls, layer: MoeLayer, device) -> "SparseMoE":
        """A module over a layer built elsewhere (samoyeds.checkpoint.PackedCheckpoint.layer)."""
        self = cls.__new__(cls)
        torch.nn.Module.__init__(self)
        self.config = layer.config
        self._adopt(layer, torch.device(device))
        return self

    def _adopt(self, layer: MoeLayer, dev: torch.device) -> None:
        self.layer = layer
        # The kernels OR error bits into it (bit 0: an id out of range); check_errors() reads it.
        self.register_buffer("error_flag", torch.zeros(1, dtype=torch.int32, device=dev), persistent=False)

    @property
    def device_bytes(self) -> int:
        return self.layer.device_bytes

    def _flat(self, x):
        return x.reshape(-1, self.config.hidden).contiguous()

    def forward(self, x: torch.Tensor, router_logits: torch.Tensor) -> torch.Tensor:
        flat = self._flat(x)
        logits = router_logits.reshape(flat.shape[0], self.config.experts).contiguous()
        y = torch.empty_like(flat)
        ws = ops.workspace_for(self.layer, flat.shape[0], flat.device)
        # Eager calls skip the dispatcher (about 10 us of host time); traced ones need the op.
        run = ops.moe_forward_cuda if ops.eager(flat, logits) else torch.ops.samoyeds.moe_forward
        run(self.layer.handle, flat, logits, y, ws, self.error_flag)
        return y.view(x.shape)

    def forward_routed(self, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> torch.Tensor:
        flat = self._flat(x)
        k = self.config.top_k
        # [T, k] each: a dense [T, E] weight tensor (as some routers return) would reshape without
        # complaint whenever E is a multiple of k, and route wrongly.
        if topk_ids.shape[-1] != k or topk_weights.shape != topk_ids.shape or topk_ids.numel() != flat.shape[0] * k:
            raise ValueError(f"samoyeds: topk_ids and topk_weights must both be [{flat.shape[0]}, {k}], not "
                             f"{list(topk_ids.shape)} and {list(topk_weights.shape)}")
        ids = topk_ids.reshape(-1, k)
        ids = (ids if ids.dtype == torch.int32 else ids.to(torch.int32)).contiguous()
        weights = topk_weights.reshape(-1, k)
        weights = (weights if weights.dtype == torch.float32 else weights.to(torch.float32)).contiguous()
        y = torch.empty_like(flat)
        ws = ops.workspace_for(self.layer, flat.shape[0], flat.device)
        run = ops.moe_forward_routed_cuda if ops.eager(flat, ids) else torch.ops.samoyeds.moe_forward_routed
        run(self.layer.handle, flat, ids, weights, y, ws, self.error_flag)
        return y.view(x.shape)

    def check_errors(self) -> None:
        """Synchronizes, raises if a kernel flagged an error since the last check, and clears the flag."""
        bits = int(self.error_flag.item())
        self.error_flag.zero_()
        if bits:
            raise RuntimeError(f"samoyeds: the layer's kernels flagged errors (bits {bits:#x}; bit 0: an expert or "
                               "token id out of range, whose entry added nothing)")

    def extra_repr(self) -> str:
        c = self.config
        return (f"hidden={c.hidden}, ffn={c.ffn}, experts={c.experts}, top_k={c.top_k}, dtype={c.dtype}, "
                f"routing={c.routing}, V={c.sparsity.V}, rows={c.sparsity.N}:{c.sparsity.M} x 2:4")
