"""samoyeds: Mixture-of-Experts layers on NVIDIA Sparse Tensor Cores, from Python.

samoyeds.handles needs only the shared library; samoyeds.ops, .nn, .pattern
(samoyeds.prune), .parallel (expert parallelism over torch.distributed) and
.hf need PyTorch (and .hf transformers), imported when first used.
"""
from ._lib import (CudaError, InvalidArgumentError, PatternViolationError, SamoyedsError, UnsupportedError,
                   set_programmatic_launch, version)
from .checkpoint import PackedCheckpoint, pack_checkpoint
from .handles import MoeConfig, MoeLayer, PackedWeights, Router, Runtime, Sparsity, runtime

__version__ = version()


def __getattr__(name):
    # torch-dependent parts load on first use, so the C layer works without torch.
    import importlib
    if name in ("ops", "nn", "hf", "pattern", "parallel"):
        return importlib.import_module(f".{name}", __name__)
    if name == "prune":
        return importlib.import_module(".pattern", __name__).prune
    if name == "SparseMoE":
        return importlib.import_module(".nn", __name__).SparseMoE
    if name == "ExpertParallelMoE":
        return importlib.import_module(".parallel", __name__).ExpertParallelMoE
    raise AttributeError(f"module 'samoyeds' has no attribute {name!r}")
