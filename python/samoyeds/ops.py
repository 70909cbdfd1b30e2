"""torch.ops.samoyeds.*: the library's ops as PyTorch custom ops.

Registered with torch.library (schema, a CUDA kernel, a fake for tracing),
so they run on the tensor's device and current stream, take caller-allocated
outputs and workspace (no allocation and no host synchronization at launch),
and trace under torch.compile(fullgraph=True) and CUDA graph capture. The
weights and layers are passed as the int address of a live handle
(samoyeds.handles), checked against the registry before any use.

The wrappers at the bottom allocate outputs for eager callers.
"""
from __future__ import annotations

import torch

from . import _lib
from .handles import MoeLayer, PackedWeights, Router, lookup, runtime

_DTYPES = {torch.float16: "f16", torch.bfloat16: "bf16"}

lib = torch.library.Library("samoyeds", "DEF")
lib.define("ssmm(int weights, Tensor x, Tensor? ids, Tensor(a!) y, bool silu=False) -> ()")
lib.define("gated_up(int w1, int w3, Tensor x, Tensor? ids, Tensor(a!) h) -> ()")
lib.define("down_combine(int w2, Tensor h, Tensor ids, Tensor p, Tensor(a!) y, Tensor(b!) workspace) -> ()")
lib.define("moe_forward(int layer, Tensor x, Tensor router_logits, Tensor(a!) y, Tensor(b!) workspace, "
           "Tensor(c!) error_flag) -> ()")
lib.define("moe_forward_routed(int layer, Tensor x, Tensor topk_ids, Tensor topk_weights, Tensor(a!) y, "
           "Tensor(b!) workspace, Tensor(c!) error_flag) -> ()")
lib.define("route(int router, Tensor router_logits, Tensor(a!) topk_ids, Tensor(b!) topk_weights) -> ()")


def _fail(message: str):
    raise _lib.InvalidArgumentError(1, "samoyeds: " + message)


def _need(ok: bool, message: str, *args):
    # The message is formatted only on failure: formatting dtypes and shapes
    # on every call cost more host time than the checks themselves.
    if not ok:
        _fail(message.format(*args))


def _on(t: torch.Tensor, name: str, device: int) -> None:
    # A host tensor's address, or another GPU's, would reach the kernels as if it were this GPU's.
    _need(t.is_cuda and t.get_device() == device, "{} must be on cuda:{}, not {}", name, device, t.device)


def _tensor(t: torch.Tensor, name: str, shape, dtype, device: int) -> None:
    _on(t, name, device)
    _need(t.dtype == dtype, "{} must be {}, not {}", name, dtype, t.dtype)
    _need(t.shape == shape, "{} must have shape {}, not {}", name, list(shape), list(t.shape))
    _need(t.is_contiguous(), "{} must be contiguous", name)


def _ids(ids, name: str, device: int):
    if ids is None:
        return None
    _on(ids, name, device)
    _need(ids.dtype == torch.int32 and ids.dim() == 1 and ids.is_contiguous(),
          "{} must be a contiguous 1-D int32 tensor", name)
    return ids


# The raw stream getter skips building a torch.cuda.Stream object (about 2 us a call).
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _stream(t: torch.Tensor) -> int:
    if _raw_stream is not None:
        return _raw_stream(t.device.index)
    return torch.cuda.current_stream(t.device).cuda_stream


def eager(*tensors) -> bool:
    """Whether a call may skip the dispatcher and run the CUDA implementation directly: plain tensors,
    not being traced (fake, functional or other subclass tensors take the registered op)."""
    return not torch.compiler.is_compiling() and all(type(t) is torch.Tensor for t in tensors)


def _ptr(t):
    return None if t is None else t.data_ptr()


def _check_ssmm(weights: int, x, ids, y):
    w = lookup(weights, PackedWeights)
    dtype = x.dtype
    _on(x, "x", w.device)
    _need(_DTYPES.get(dtype) == w.dtype, "x is {} but the weights are {}", dtype, w.dtype)
    _need(x.dim() == 2 and x.shape[1] == w.k and x.is_contiguous(), "x must be contiguous [rows, {}]", w.k)
    n = x.shape[0] if ids is None else _ids(ids, "ids", w.device).numel()
    _tensor(y, "y", (n, w.m), dtype, w.device)
    return w, n


def _check_layer(layer: int, x, y, workspace, error_flag):
    lay = lookup(layer, MoeLayer)
    c, dev = lay.config, lay.runtime.device
    _on(x, "x", dev)
    _need(_DTYPES.get(x.dtype) == c.dtype, "x is {} but the layer is {}", x.dtype, c.dtype)
    _need(x.dim() == 2 and x.shape[1] == c.hidden and x.is_contiguous(), "x must be contiguous [tokens, {}]",
          c.hidden)
    _tensor(y, "y", x.shape, x.dtype, dev)
    _on(workspace, "workspace", dev)
    _need(workspace.dtype == torch.uint8 and workspace.dim() == 1, "workspace must be a 1-D uint8 tensor")
    _tensor(error_flag, "error_flag", (1,), torch.int32, dev)
    return lay


@torch.library.impl(lib, "ssmm", "CUDA")
def _ssmm(weights, x, ids, y, silu=False):
    w, n = _check_ssmm(weights, x, ids, y)
    _lib.call("samoyeds_ssmm", runtime(x.device.index).handle, w.handle, x.data_ptr(), x.shape[0], _ptr(ids), n,
              y.data_ptr(), int(silu), _stream(x))


@torch.library.impl(lib, "gated_up", "CUDA")
def _gated_up(w1, w3, x, ids, h):
    a, n = _check_ssmm(w1, x, ids, h)
    b = lookup(w3, PackedWeights)
    _need((b.m, b.k, b.dtype, b.device) == (a.m, a.k, a.dtype, a.device),
          "w1 and w3 must have the same shape, dtype and device")
    _lib.call("samoyeds_gated_up", runtime(x.device.index).handle, a.handle, b.handle, x.data_ptr(), x.shape[0],
              _ptr(ids), n, h.data_ptr(), _stream(x))


@torch.library.impl(lib, "down_combine", "CUDA")
def _down_combine(w2, h, ids, p, y, workspace):
    w = lookup(w2, PackedWeights)
    n = h.shape[0]
    _tensor(h, "h", (n, w.k), h.dtype, w.device)
    _need(_DTYPES.get(h.dtype) == w.dtype, "h is {} but the weights are {}", h.dtype, w.dtype)
    _tensor(_ids(ids, "ids", w.device), "ids", (n,), torch.int32, w.device)
    _tensor(p, "p", (n,), torch.float32, w.device)
    _on(y, "y", w.device)
    _need(y.dim() == 2 and y.shape[1] == w.m and y.dtype == h.dtype and y.is_contiguous(),
          "y must be contiguous [rows, {}] {}", w.m, h.dtype)
    _on(workspace, "workspace", w.device)
    # The C call takes no size: a short workspace would be written past its end.
    need = _lib.lib.samoyeds_down_combine_workspace_bytes(w.handle, n)
    _need(workspace.dtype == torch.uint8 and workspace.dim() == 1 and workspace.numel() >= need,
          "workspace must be a 1-D uint8 tensor of at least {} bytes", need)
    _lib.call("samoyeds_down_combine", runtime(h.device.index).handle, w.handle, h.data_ptr(), n, ids.data_ptr(),
              p.data_ptr(), y.data_ptr(), y.shape[0], workspace.data_ptr(), _stream(h))


@torch.library.impl(lib, "moe_forward", "CUDA")
def moe_forward_cuda(layer, x, router_logits, y, workspace, error_flag):
    lay = _check_layer(layer, x, y, workspace, error_flag)
    c = lay.config
    fp32 = router_logits.dtype == torch.float32
    _need(fp32 or router_logits.dtype == x.dtype, "router_logits must be float32 or {}", x.dtype)
    _tensor(router_logits, "router_logits", (x.shape[0], c.experts), router_logits.dtype, lay.runtime.device)
    _lib.call("samoyeds_moe_forward", lay.handle, x.data_ptr(), x.shape[0], router_logits.data_ptr(), int(fp32),
              y.data_ptr(), workspace.data_ptr(), workspace.numel(), error_flag.data_ptr(), _stream(x))


@torch.library.impl(lib, "moe_forward_routed", "CUDA")
def moe_forward_routed_cuda(layer, x, topk_ids, topk_weights, y, workspace, error_flag):
    lay = _check_layer(layer, x, y, workspace, error_flag)
    shape = (x.shape[0], lay.config.top_k)
    _tensor(topk_ids, "topk_ids", shape, torch.int32, lay.runtime.device)
    _tensor(topk_weights, "topk_weights", shape, torch.float32, lay.runtime.device)
    _lib.call("samoyeds_moe_forward_routed", lay.handle, x.data_ptr(), x.shape[0], topk_ids.data_ptr(),
              topk_weights.data_ptr(), y.data_ptr(), workspace.data_ptr(), workspace.numel(),
              error_flag.data_ptr(), _stream(x))


@torch.library.impl(lib, "route", "CUDA")
def route_cuda(router, router_logits, topk_ids, topk_weights):
    r = lookup(router, Router)
    c, dev = r.config, r.runtime.device
    fp32 = router_logits.dtype == torch.float32
    _need(fp32 or _DTYPES.get(router_logits.dtype) == c.dtype, "router_logits must be float32 or {}", c.dtype)
    _need(router_logits.dim() == 2, "router_logits must be [tokens, {}]", c.experts)
    _tensor(router_logits, "router_logits", (router_logits.shape[0], c.experts), router_logits.dtype, dev)
    shape = (router_logits.shape[0], c.top_k)
    _tensor(topk_ids, "topk_ids", shape, torch.int32, dev)
    _tensor(topk_weights, "topk_weights", shape, torch.float32, dev)
    _lib.call("samoyeds_route", r.handle, router_logits.data_ptr(), router_logits.shape[0], int(fp32),
              topk_ids.data_ptr(), topk_weights.data_ptr(), _stream(router_logits))


# Fakes: the ops write only into their arguments, so tracing needs no outputs.
for _name in ("ssmm", "gated_up", "down_combine", "moe_forward", "moe_forward_routed", "route"):
    torch.library.register_fake(f"samoyeds::{_name}", lambda *args, **kwargs: None, lib=lib)


# Eager conveniences: allocate what the op writes, from PyTorch's caching allocator.
def workspace_for(layer: MoeLayer, tokens, device) -> torch.Tensor:
    """A workspace for `tokens` tokens (an int, or a symbol while tracing): the layer's affine bound,
    so no library call is needed to size it."""
    return torch.empty(layer.workspace_per_token * tokens + layer.workspace_fixed, dtype=torch.uint8, device=device)


def moe_forward(layer: MoeLayer, x: torch.Tensor, router_logits: torch.Tensor, error_flag=None) -> torch.Tensor:
    y = torch.empty_like(x)
    flag = error_flag if error_flag is not None else torch.zeros(1, dtype=torch.int32, device=x.device)
    torch.ops.samoyeds.moe_forward(layer.handle, x, router_logits, y, workspace_for(layer, x.shape[0], x.device),
                                   flag)
    return y


def moe_forward_routed(layer: MoeLayer, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor,
                       error_flag=None) -> torch.Tensor:
    y = torch.empty_like(x)
    flag = error_flag if error_flag is not None else torch.zeros(1, dtype=torch.int32, device=x.device)
    torch.ops.samoyeds.moe_forward_routed(layer.handle, x, topk_ids.to(torch.int32).contiguous(),
                                          topk_weights.to(torch.float32).contiguous(), y,
                                          workspace_for(layer, x.shape[0], x.device), flag)
    return y


def route(router: Router, router_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's top_k expert ids [T, top_k] (int32) and weights [T, top_k] (float32), on the GPU."""
    shape = (router_logits.shape[0], router.config.top_k)
    ids = torch.empty(shape, dtype=torch.int32, device=router_logits.device)
    weights = torch.empty(shape, dtype=torch.float32, device=router_logits.device)
    run = route_cuda if eager(router_logits) else torch.ops.samoyeds.route
    run(router.handle, router_logits, ids, weights)
    return ids, weights


def pack(weight: torch.Tensor, sparsity=None, strict: bool = False) -> PackedWeights:
    """Packs a dense [m, k] 16-bit weight (CPU or CUDA tensor); strict verifies instead of pruning."""
    from .handles import Sparsity
    _need(weight.dtype in _DTYPES and weight.dim() == 2, "weight must be a 2-D float16 or bfloat16 tensor")
    w = weight.contiguous()
    device = w.device.index if w.is_cuda else torch.cuda.current_device()
    runtime(device)  # the device's context exists before the library copies from it or uploads to it
    with torch.cuda.device(device):
        return PackedWeights(w.data_ptr(), w.shape[0], w.shape[1], _DTYPES[w.dtype], sparsity or Sparsity(),
                             on_device=w.is_cuda, strict=strict, device=device)
