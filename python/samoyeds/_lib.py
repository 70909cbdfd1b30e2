"""ctypes over the C ABI (include/samoyeds/samoyeds.h).

The core library has no Python or libtorch in it; this module is the only
place that knows the C signatures. A failed call raises the library's own
message as a SamoyedsError subclass named by its status code.
"""
from __future__ import annotations

import ctypes
import glob
import os
from ctypes import POINTER, c_char_p, c_double, c_float, c_int, c_int64, c_size_t, c_void_p

# Status codes (samoyeds_status).
OK = 0
_STATUS_NAMES = {
    1: "invalid argument",
    2: "pattern violation",
    3: "non-finite input",
    4: "unsupported",
    5: "compile error",
    6: "CUDA error",
    7: "cache error",
    8: "I/O error",
    99: "internal error",
}

F16, BF16 = 0, 1
ROUTING = {"softmax_topk": 0, "sigmoid_group_topk": 1, "topk_softmax": 2}
ACTIVATION = {"silu": 0, "clamped_swiglu": 1}


class SamoyedsError(RuntimeError):
    """A failed library call: `status` is the C status code, the text its message."""

    def __init__(self, status: int, message: str):
        super().__init__(message or f"samoyeds: {_STATUS_NAMES.get(status, 'error')} (status {status})")
        self.status = status


class InvalidArgumentError(SamoyedsError, ValueError):
    pass


class PatternViolationError(InvalidArgumentError):
    """Strict packing found weights outside the N:M x 2:4 pattern."""


class UnsupportedError(SamoyedsError, NotImplementedError):
    pass


class CudaError(SamoyedsError):
    pass


class NonFiniteInputError(SamoyedsError, ValueError):
    """NaN or Inf in weights to be packed."""


class LibraryIOError(SamoyedsError, OSError):
    """A file the library reads or writes (checkpoints, config, export)."""

    def __init__(self, status: int, message: str):
        SamoyedsError.__init__(self, status, message)


_ERROR_CLASSES = {1: InvalidArgumentError, 2: PatternViolationError, 3: NonFiniteInputError, 4: UnsupportedError,
                  6: CudaError, 8: LibraryIOError}


class MoeSpec(ctypes.Structure):
    """samoyeds_moe_spec, field for field (a CPU test compares offsets with the C compiler's)."""

    _fields_ = [
        ("hidden", c_int64),
        ("ffn", c_int64),
        ("experts", c_int),
        ("top_k", c_int),
        ("dtype", c_int),
        ("V", c_int),
        ("N", c_int),
        ("M", c_int),
        ("renormalize", c_int),
        ("n_shared", c_int),
        ("shared_ffn", c_int64),
        ("weights_on_device", c_int),
        ("strict", c_int),
        ("routing", c_int),
        ("groups", c_int),
        ("topk_groups", c_int),
        ("routed_scaling_factor", c_double),
        ("choice_bias", POINTER(c_float)),
        ("shared_gate", c_void_p),
        ("expert_parallel", c_int),
        ("activation", c_int),
        ("swiglu_alpha", c_double),
        ("swiglu_limit", c_double),
        ("expert_b1", POINTER(c_void_p)),
        ("expert_b3", POINTER(c_void_p)),
        ("expert_b2", POINTER(c_void_p)),
        ("experts_e4m3", c_int),
    ]


_PTRS = POINTER(c_void_p)
# name: (restype, argtypes); a restype of c_int is a status checked by call().
_SIGNATURES = {
    "samoyeds_last_error": (c_char_p, []),
    "samoyeds_version": (c_char_p, []),
    "samoyeds_set_programmatic_launch": (None, [c_int]),
    "samoyeds_runtime_create": (c_int, [c_int, c_char_p, POINTER(c_void_p)]),
    "samoyeds_runtime_destroy": (None, [c_void_p]),
    "samoyeds_runtime_kernels": (c_size_t, [c_void_p, c_void_p, c_size_t]),
    "samoyeds_weights_pack": (c_int, [c_void_p, c_int64, c_int64, c_int, c_int, c_int, c_int, c_int, POINTER(c_void_p)]),
    "samoyeds_weights_pack_device": (
        c_int, [c_void_p, c_int64, c_int64, c_int, c_int, c_int, c_int, c_int, POINTER(c_void_p)]),
    "samoyeds_weights_destroy": (None, [c_void_p]),
    "samoyeds_weights_device_bytes": (c_int64, [c_void_p]),
    "samoyeds_ssmm": (c_int, [c_void_p, c_void_p, c_void_p, c_int64, c_void_p, c_int64, c_void_p, c_int, c_void_p]),
    "samoyeds_gated_up": (c_int, [c_void_p, c_void_p, c_void_p, c_void_p, c_int64, c_void_p, c_int64, c_void_p, c_void_p]),
    "samoyeds_down_combine_workspace_bytes": (c_size_t, [c_void_p, c_int64]),
    "samoyeds_down_combine": (
        c_int, [c_void_p, c_void_p, c_void_p, c_int64, c_void_p, c_void_p, c_void_p, c_int64, c_void_p, c_void_p]),
    "samoyeds_moe_layer_create": (
        c_int, [c_void_p, POINTER(MoeSpec), _PTRS, _PTRS, _PTRS, _PTRS, _PTRS, _PTRS, POINTER(c_void_p)]),
    "samoyeds_moe_layer_load_packed": (
        c_int, [c_void_p, POINTER(MoeSpec), c_char_p, POINTER(c_char_p), POINTER(c_char_p), POINTER(c_char_p),
                POINTER(c_char_p), c_char_p, POINTER(c_void_p)]),
    "samoyeds_pack_checkpoint": (c_int, [c_char_p, c_char_p, c_int, c_int, c_int, c_int]),
    "samoyeds_moe_layer_destroy": (None, [c_void_p]),
    "samoyeds_moe_layer_device_bytes": (c_int64, [c_void_p]),
    "samoyeds_moe_workspace_bytes": (c_size_t, [c_void_p, c_int64]),
    "samoyeds_moe_workspace_bound": (c_int, [c_void_p, POINTER(c_int64), POINTER(c_int64)]),
    "samoyeds_moe_forward": (
        c_int, [c_void_p, c_void_p, c_int64, c_void_p, c_int, c_void_p, c_void_p, c_size_t, c_void_p, c_void_p]),
    "samoyeds_router_create": (c_int, [c_void_p, POINTER(MoeSpec), POINTER(c_void_p)]),
    "samoyeds_router_destroy": (None, [c_void_p]),
    "samoyeds_route": (c_int, [c_void_p, c_void_p, c_int64, c_int, c_void_p, c_void_p, c_void_p]),
    "samoyeds_moe_forward_routed": (
        c_int, [c_void_p, c_void_p, c_int64, c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p, c_void_p]),
}


def _candidates() -> list[str]:
    """Where the shared library may be: $SAMOYEDS_LIBRARY, the wheel's lib/, a build tree."""
    if os.environ.get("SAMOYEDS_LIBRARY"):
        return [os.environ["SAMOYEDS_LIBRARY"]]
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(glob.glob(os.path.join(here, "lib*", "libsamoyeds.so*")))
    # A source checkout used in place (PYTHONPATH=python): the default build folder.
    found += sorted(glob.glob(os.path.join(here, "..", "..", "build", "libsamoyeds.so")))
    return found


def _preload_nvrtc() -> None:
    """NVRTC from a pip-installed CUDA runtime (as PyTorch's wheels bring), where the
    loader's paths have none: the library links libnvrtc.so.13."""
    import importlib.util
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for path in sorted(glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so.1*"))):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return
            except OSError:
                pass


def _load() -> ctypes.CDLL:
    tried = _candidates()
    errors = []
    for path in tried:
        try:
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                if "libnvrtc" not in str(e):
                    raise
                _preload_nvrtc()
                lib = ctypes.CDLL(path)
            break
        except OSError as e:
            errors.append(f"{path}: {e}")
    else:
        raise ImportError(
            "samoyeds: libsamoyeds not found or not loadable; set SAMOYEDS_LIBRARY to its path"
            + (" (" + "; ".join(errors) + ")" if errors else " (searched the package and ./build)"))
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


lib = _load()


def last_error() -> str:
    return lib.samoyeds_last_error().decode("utf-8", "replace")


def call(name: str, *args) -> None:
    """Calls a status-returning entry point; raises its message on failure."""
    status = getattr(lib, name)(*args)
    if status != OK:
        raise _ERROR_CLASSES.get(status, SamoyedsError)(status, last_error())


def version() -> str:
    return lib.samoyeds_version().decode()


def set_programmatic_launch(on: bool) -> None:
    """Launches enqueued (or captured) after this use programmatic dependent launch, or not (benchmarks)."""
    lib.samoyeds_set_programmatic_launch(int(on))


def pointer_array(values) -> ctypes.Array:
    """A C array of pointers (for the per-expert weight arrays)."""
    return (c_void_p * len(values))(*values)


def null_ptrs():
    return ctypes.cast(None, _PTRS)


__all__ = [
    "SamoyedsError", "InvalidArgumentError", "PatternViolationError", "UnsupportedError", "CudaError",
    "MoeSpec", "lib", "call", "version", "last_error", "F16", "BF16", "ROUTING",
]
