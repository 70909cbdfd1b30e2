"""Python objects that own the C handles: a runtime per device, packed
weights, MoE layers. No torch here: pointers are plain ints, so these serve
any array library; samoyeds.ops puts torch tensors on top.

Each live handle is registered by its address, so an op given a bare int
(what torch.library passes) can refuse a stale or foreign one instead of
reading freed memory.
"""
from __future__ import annotations

import ctypes
import os
import threading
import weakref
from ctypes import c_float, c_void_p
from dataclasses import dataclass

from . import _lib

_live: "weakref.WeakValueDictionary[int, object]" = weakref.WeakValueDictionary()
_runtimes: dict[tuple[int, str], "Runtime"] = {}
_runtimes_lock = threading.Lock()


def lookup(handle: int, kind: type):
    obj = _live.get(int(handle))
    if not isinstance(obj, kind):
        raise _lib.InvalidArgumentError(
            1, f"samoyeds: {handle:#x} is not a live {kind.__name__} handle (destroyed, or never made here)")
    return obj


class Runtime:
    """The kernel runtime of one device: JIT dispatch and the kernel cache."""

    def __init__(self, device: int = 0, cache_path: str | None = None):
        out = c_void_p()
        _lib.call("samoyeds_runtime_create", device, cache_path.encode() if cache_path else None, ctypes.byref(out))
        self.handle, self.device = out.value, device
        _live[self.handle] = self

    def kernels(self) -> list[tuple[str, bool, float]]:
        """Every kernel loaded so far, in load order: (backend, spec and config; compiled by NVRTC
        rather than read from the cache; load ms). What calls ran, and whether one compiled."""
        need = _lib.lib.samoyeds_runtime_kernels(self.handle, None, 0)
        while True:  # another thread may load a kernel between the two calls
            buf = ctypes.create_string_buffer(need)
            got = _lib.lib.samoyeds_runtime_kernels(self.handle, buf, need)
            if got <= need:
                break
            need = got
        rows = []
        for line in buf.value.decode().splitlines():
            name, source, ms = line.split("\t")
            rows.append((name, source == "nvrtc", float(ms)))
        return rows

    # The destroy function is bound at definition: at interpreter exit module globals may be gone.
    def __del__(self, _destroy=_lib.lib.samoyeds_runtime_destroy):
        if getattr(self, "handle", None):
            _destroy(self.handle)
            self.handle = None


def runtime(device: int = 0, cache_path: str | None = None) -> Runtime:
    """One shared runtime per (device, cache file), made on first use."""
    key = (device, cache_path or "")
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = Runtime(device, cache_path)
        return _runtimes[key]


def _dtype_code(dtype: str) -> int:
    if dtype not in ("f16", "bf16"):
        raise _lib.InvalidArgumentError(1, f"samoyeds: dtype must be 'f16' or 'bf16', not {dtype!r}")
    return _lib.F16 if dtype == "f16" else _lib.BF16


@dataclass(frozen=True)
class Sparsity:
    """N rows of every M per V-column segment, then 2:4 inside each kept row."""

    V: int = 128
    N: int = 1
    M: int = 2


class PackedWeights:
    """One [m, k] weight matrix pruned (or, strict, verified) and packed on the device."""

    def __init__(self, ptr: int, m: int, k: int, dtype: str, sparsity: Sparsity = Sparsity(), *,
                 on_device: bool, strict: bool = False, device: int = 0):
        out = c_void_p()
        entry = "samoyeds_weights_pack_device" if on_device else "samoyeds_weights_pack"
        _lib.call(entry, ptr, m, k, _dtype_code(dtype), sparsity.V, sparsity.N, sparsity.M, int(strict),
                  ctypes.byref(out))
        self.handle, self.m, self.k, self.dtype, self.sparsity = out.value, m, k, dtype, sparsity
        self.device = device  # the GPU its packed copy lives on (the current one when packed)
        _live[self.handle] = self

    @property
    def device_bytes(self) -> int:
        return _lib.lib.samoyeds_weights_device_bytes(self.handle)

    # The destroy function is bound at definition: at interpreter exit module globals may be gone.
    def __del__(self, _destroy=_lib.lib.samoyeds_weights_destroy):
        if getattr(self, "handle", None):
            _destroy(self.handle)
            self.handle = None


@dataclass(frozen=True)
class MoeConfig:
    """A layer's shape and routing (the fields of samoyeds_moe_spec; docs/models.md)."""

    hidden: int
    ffn: int
    experts: int
    top_k: int
    dtype: str = "bf16"
    sparsity: Sparsity = Sparsity()
    routing: str = "softmax_topk"
    renormalize: bool = False
    groups: int = 1
    topk_groups: int = 1
    routed_scaling_factor: float = 1.0
    n_shared: int = 0
    shared_ffn: int = 0
    # Ids outside [0, experts) name other ranks' experts: they add nothing and raise no error bit.
    expert_parallel: bool = False
    # silu(g) * u, or gpt-oss's clamped SwiGLU (with the experts' biases).
    activation: str = "silu"
    swiglu_alpha: float = 1.702
    swiglu_limit: float = 7.0
    # Routed experts in FP8 e4m3 (experimental: sm_90a, bf16; docs/fp8.md).
    fp8_experts: bool = False

    def c_spec(self) -> _lib.MoeSpec:
        if self.routing not in _lib.ROUTING:
            raise _lib.InvalidArgumentError(
                1, f"samoyeds: routing must be one of {sorted(_lib.ROUTING)}, not {self.routing!r}")
        s = _lib.MoeSpec()
        s.hidden, s.ffn, s.experts, s.top_k = self.hidden, self.ffn, self.experts, self.top_k
        s.dtype = _dtype_code(self.dtype)
        s.V, s.N, s.M = self.sparsity.V, self.sparsity.N, self.sparsity.M
        s.renormalize = int(self.renormalize)
        s.n_shared, s.shared_ffn = self.n_shared, self.shared_ffn
        s.routing = _lib.ROUTING[self.routing]
        s.groups, s.topk_groups = self.groups, self.topk_groups
        s.routed_scaling_factor = self.routed_scaling_factor
        s.expert_parallel = int(self.expert_parallel)
        if self.activation not in _lib.ACTIVATION:
            raise _lib.InvalidArgumentError(
                1, f"samoyeds: activation must be one of {sorted(_lib.ACTIVATION)}, not {self.activation!r}")
        s.activation = _lib.ACTIVATION[self.activation]
        s.swiglu_alpha, s.swiglu_limit = self.swiglu_alpha, self.swiglu_limit
        s.experts_e4m3 = int(self.fp8_experts)
        return s


def _set_choice_bias(spec: _lib.MoeSpec, config: MoeConfig, choice_bias):
    """Points spec at a C copy of choice_bias (one value per expert), which the caller keeps alive
    until the library has copied it; None leaves it unset."""
    if choice_bias is None:
        return None
    if len(choice_bias) != config.experts:
        raise _lib.InvalidArgumentError(
            1, f"samoyeds: choice_bias has {len(choice_bias)} values for {config.experts} experts")
    bias = (c_float * config.experts)(*[float(b) for b in choice_bias])
    spec.choice_bias = ctypes.cast(bias, ctypes.POINTER(c_float))
    return bias


class Router:
    """A layer's routing on its own (samoyeds_router): each token's top_k experts and weights over
    `experts`, by the routing fields of `config` (its shape is not read). Expert-parallel callers
    route over all the model's experts with it (samoyeds.parallel)."""

    def __init__(self, rt: Runtime, config: MoeConfig, choice_bias=None):
        spec = config.c_spec()
        bias = _set_choice_bias(spec, config, choice_bias)  # alive until the router has copied it
        out = c_void_p()
        _lib.call("samoyeds_router_create", rt.handle, ctypes.byref(spec), ctypes.byref(out))
        self.handle, self.config, self.runtime = out.value, config, rt
        _live[self.handle] = self

    def __del__(self, _destroy=_lib.lib.samoyeds_router_destroy):
        if getattr(self, "handle", None):
            _destroy(self.handle)
            self.handle = None


class MoeLayer:
    """A whole MoE layer over packed experts (samoyeds_moe_layer).

    w1, w3, w2: per-expert addresses of 16-bit row-major matrices (gate and up
    [ffn, hidden], down [hidden, ffn]), on the device when on_device, else on
    the host; the layer packs its own copy and keeps no reference to them.
    """

    def __init__(self, rt: Runtime, config: MoeConfig, w1, w3, w2, *, on_device: bool, strict: bool = False,
                 shared=None, choice_bias=None, shared_gate: int | None = None, biases=None):
        if not (len(w1) == len(w3) == len(w2) == config.experts):
            raise _lib.InvalidArgumentError(
                1, f"samoyeds: {config.experts} experts need as many w1, w3 and w2 pointers "
                   f"(got {len(w1)}, {len(w3)}, {len(w2)})")
        spec = config.c_spec()
        spec.weights_on_device, spec.strict = int(on_device), int(strict)
        bias = _set_choice_bias(spec, config, choice_bias)  # alive until the layer has copied it
        spec.shared_gate = shared_gate
        if biases is not None:  # (b1, b3, b2): per-expert addresses, the clamped SwiGLU's
            if any(len(b) != config.experts for b in biases):
                raise _lib.InvalidArgumentError(1, f"samoyeds: biases need {config.experts} addresses each")
            bias_arrays = [_lib.pointer_array(list(b)) for b in biases]
            spec.expert_b1, spec.expert_b3, spec.expert_b2 = bias_arrays
        shared = shared or ([], [], [])
        if len(shared[0]) != config.n_shared:
            raise _lib.InvalidArgumentError(
                1, f"samoyeds: n_shared is {config.n_shared} but {len(shared[0])} shared experts were given")
        arrays = [_lib.pointer_array(list(a)) for a in (w1, w3, w2)]
        shared_arrays = [_lib.pointer_array(list(a)) if config.n_shared else _lib.null_ptrs() for a in shared]
        out = c_void_p()
        _lib.call("samoyeds_moe_layer_create", rt.handle, ctypes.byref(spec), *arrays, *shared_arrays,
                  ctypes.byref(out))
        self._adopt(out.value, config, rt)

    @classmethod
    def load_packed(cls, rt: Runtime, config: MoeConfig, checkpoint_dir: str, w1, w3, w2, shared=None,
                    shared_gate: str | None = None) -> "MoeLayer":
        """From a packed checkpoint folder, by weight names (samoyeds.checkpoint.PackedCheckpoint.layer):
        the library reads and checks each packed matrix; nothing is pruned."""
        if not (len(w1) == len(w3) == len(w2) == config.experts):
            raise _lib.InvalidArgumentError(1, f"samoyeds: {config.experts} experts need as many w1, w3 and w2 names")
        if (shared is not None) != bool(config.n_shared) or (shared is not None and len(shared) != 3):
            raise _lib.InvalidArgumentError(1, "samoyeds: a shared expert takes 3 names and n_shared = 1")
        names = [(ctypes.c_char_p * len(v))(*[n.encode() for n in v]) for v in (w1, w3, w2)]
        shared_c = (ctypes.c_char_p * 3)(*[n.encode() for n in shared]) if shared is not None else None
        spec = config.c_spec()
        out = c_void_p()
        _lib.call("samoyeds_moe_layer_load_packed", rt.handle, ctypes.byref(spec), os.fsencode(checkpoint_dir),
                  *names, shared_c, shared_gate.encode() if shared_gate else None, ctypes.byref(out))
        self = cls.__new__(cls)
        self._adopt(out.value, config, rt)
        return self

    def _adopt(self, handle: int, config: MoeConfig, rt: Runtime) -> None:
        # The layer holds the runtime alive on the C side too.
        self.handle, self.config, self.runtime = handle, config, rt
        _live[self.handle] = self
        per_token, fixed = ctypes.c_int64(), ctypes.c_int64()
        _lib.call("samoyeds_moe_workspace_bound", self.handle, ctypes.byref(per_token), ctypes.byref(fixed))
        # workspace_bytes(T) <= per_token * T + fixed: plain ints, so a traced T sizes it too.
        self.workspace_per_token, self.workspace_fixed = per_token.value, fixed.value

    @property
    def device_bytes(self) -> int:
        return _lib.lib.samoyeds_moe_layer_device_bytes(self.handle)

    def workspace_bytes(self, tokens: int) -> int:
        return _lib.lib.samoyeds_moe_workspace_bytes(self.handle, tokens)

    # The destroy function is bound at definition: at interpreter exit module globals may be gone.
    def __del__(self, _destroy=_lib.lib.samoyeds_moe_layer_destroy):
        if getattr(self, "handle", None):
            _destroy(self.handle)
            self.handle = None
