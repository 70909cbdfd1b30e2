"""Packed checkpoints (format/packed_checkpoint.hpp): a Hugging Face
checkpoint folder whose expert weights are stored pruned and packed, so a
model is packed once and loaded without packing again.

pack_checkpoint() runs the library's packer (as `samoyeds pack` does);
PackedCheckpoint reads the result with a small safetensors reader of its own
(memory-mapped, no extra package), and builds layers from it.
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import re
import struct

from . import _lib
from .handles import MoeConfig, MoeLayer, Runtime, Sparsity

_INDEX = "model.safetensors.index.json"
# Expert projections by role, as Mixtral (w1, w3, w2) and Qwen/OLMoE/DeepSeek checkpoints name them.
_EXPERT = re.compile(r"(?:^|\.)layers\.(\d+)\..*?experts\.(\d+)\.(w1|w3|w2|gate_proj|up_proj|down_proj)\.weight$")
_SHARED = re.compile(r"(?:^|\.)layers\.(\d+)\..*?shared_experts?\.(gate_proj|up_proj|down_proj)\.weight$")
_ROLE = {"w1": "w1", "gate_proj": "w1", "w3": "w3", "up_proj": "w3", "w2": "w2", "down_proj": "w2"}


def pack_checkpoint(in_dir: str, out_dir: str, sparsity: Sparsity = Sparsity(), strict: bool = False) -> None:
    """Prunes (or, strict, verifies) and packs every expert weight of a checkpoint folder into out_dir,
    copying everything else. No GPU needed."""
    _lib.call("samoyeds_pack_checkpoint", os.fsencode(in_dir), os.fsencode(out_dir), sparsity.V, sparsity.N,
              sparsity.M, int(strict))


class _Shard:
    def __init__(self, path: str):
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (n,) = struct.unpack("<Q", self.map[:8])
        header = json.loads(self.map[8:8 + n])
        self.metadata = header.pop("__metadata__", {})
        self.data = 8 + n
        self.tensors = header

    def buffer(self, name: str):
        """The tensor's bytes, copied out of the mapping into a ctypes array."""
        begin, end = self.tensors[name]["data_offsets"]
        return (ctypes.c_uint8 * (end - begin)).from_buffer_copy(self.map, self.data + begin) if end > begin else None


class PackedCheckpoint:
    """A packed checkpoint folder: its shards, the pattern, and each layer's packed experts."""

    def __init__(self, path: str):
        self.path = path
        index = os.path.join(path, _INDEX)
        if os.path.exists(index):
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
        else:
            single = _Shard(os.path.join(path, "model.safetensors"))
            weight_map = {name: "model.safetensors" for name in single.tensors}
        self._where = weight_map
        self._shards: dict[str, _Shard] = {}
        first = self._shard(next(iter(weight_map.values())))
        if first.metadata.get("samoyeds.format") != "packed":
            raise _lib.InvalidArgumentError(1, f"samoyeds: {path} is not a packed checkpoint (run samoyeds pack)")
        version = first.metadata.get("samoyeds.format_version")
        if version != "1":
            raise _lib.UnsupportedError(4, f"samoyeds: {path}: packed format version {version}; this reads 1")
        self.sparsity = _parse_sparsity(first.metadata["samoyeds.sparsity"])
        # layer -> expert -> role -> weight name; layer -> role -> name for the shared expert.
        self.experts: dict[int, dict[int, dict[str, str]]] = {}
        self.shared: dict[int, dict[str, str]] = {}
        for name in weight_map:
            if not name.endswith(".weight.values"):
                continue
            weight = name[: -len(".values")]
            if m := _EXPERT.search(weight):
                self.experts.setdefault(int(m[1]), {}).setdefault(int(m[2]), {})[_ROLE[m[3]]] = weight
            elif m := _SHARED.search(weight):
                self.shared.setdefault(int(m[1]), {})[_ROLE[m[2]]] = weight

    def _shard(self, file: str) -> _Shard:
        if file not in self._shards:
            self._shards[file] = _Shard(os.path.join(self.path, file))
        return self._shards[file]

    def matrix(self, weight: str):
        """(PackedMatrix, buffers that must outlive it) of one packed weight."""
        shard = self._shard(self._where[weight + ".values"])
        shape = struct.unpack("<2q", bytes(shard.buffer(weight + ".shape")))
        buffers = [shard.buffer(weight + part) for part in (".values", ".sel", ".meta")]
        c = _lib.PackedMatrix(shape[0], shape[1], *[ctypes.addressof(b) for b in buffers])
        return c, buffers

    def layer(self, rt: Runtime, index: int, *, top_k: int, dtype: str, shared: bool = False,
              expert_parallel: bool = False, **routing) -> MoeLayer:
        """The MoE layer `index` (the number in `layers.N.`) with its packed experts, and its shared
        expert where `shared`; routing fields as MoeConfig's."""
        experts = self.experts.get(index)
        if not experts:
            raise _lib.InvalidArgumentError(1, f"samoyeds: {self.path} has no packed experts for layer {index}")
        keep = []
        arrays = {}
        for role in ("w1", "w3", "w2"):
            mats = []
            for e in range(len(experts)):
                if e not in experts or role not in experts[e]:
                    raise _lib.InvalidArgumentError(
                        1, f"samoyeds: {self.path}: layer {index} has no packed {role} for expert {e}")
                c, bufs = self.matrix(experts[e][role])
                mats.append(c)
                keep.append(bufs)
            arrays[role] = (_lib.PackedMatrix * len(mats))(*mats)
        w1 = arrays["w1"][0]
        shared_c, shared_ffn = None, 0
        if shared:
            roles = self.shared.get(index, {})
            if set(roles) != {"w1", "w3", "w2"}:
                raise _lib.InvalidArgumentError(1, f"samoyeds: {self.path}: layer {index} has no packed shared expert")
            mats = []
            for role in ("w1", "w3", "w2"):
                c, bufs = self.matrix(roles[role])
                mats.append(c)
                keep.append(bufs)
            shared_c = (_lib.PackedMatrix * 3)(*mats)
            shared_ffn = mats[0].m
        config = MoeConfig(hidden=w1.k, ffn=w1.m, experts=len(experts), top_k=top_k, dtype=dtype,
                           sparsity=self.sparsity, n_shared=int(shared), shared_ffn=shared_ffn,
                           expert_parallel=expert_parallel, **routing)
        return MoeLayer.from_packed(rt, config, arrays["w1"], arrays["w3"], arrays["w2"], shared_c)


def _parse_sparsity(text: str) -> Sparsity:
    m = re.fullmatch(r"(\d+):(\d+)x2:4/V(\d+)", text)
    if not m:
        raise _lib.InvalidArgumentError(1, f"samoyeds: unreadable sparsity {text!r} in a packed checkpoint")
    return Sparsity(V=int(m[3]), N=int(m[1]), M=int(m[2]))
