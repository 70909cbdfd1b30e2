"""Packed checkpoints (format/packed_checkpoint.hpp): a Hugging Face
checkpoint folder whose expert weights are stored pruned and packed, so a
model is packed once and loaded without packing again.

pack_checkpoint() runs the library's packer (as `samoyeds pack` does).
PackedCheckpoint lists what a packed folder holds (names, shapes, pattern,
dtype, from the safetensors headers) and has the library load a layer's
experts by name: the library reads and checks the packed parts itself.
"""
from __future__ import annotations

import json
import os
import re
import struct

from . import _lib
from .handles import MoeConfig, MoeLayer, Runtime, Sparsity

_INDEX = "model.safetensors.index.json"
# Expert projections by role, as Mixtral (w1, w3, w2) and Qwen/OLMoE/DeepSeek checkpoints name them;
# group 1 is what precedes the layer number (one stack of layers from another).
_EXPERT = re.compile(r"^(.*?)layers\.(\d+)\..*?experts\.(\d+)\.(w1|w3|w2|gate_proj|up_proj|down_proj)\.weight$")
_SHARED = re.compile(r"^(.*?)layers\.(\d+)\..*?shared_experts?\.(gate_proj|up_proj|down_proj)\.weight$")
_GATE = re.compile(r"^(.*?)layers\.(\d+)\..*?shared_expert_gate\.weight$")
_ROLE = {"w1": "w1", "gate_proj": "w1", "w3": "w3", "up_proj": "w3", "w2": "w2", "down_proj": "w2"}
_DTYPE = {"BF16": "bf16", "F16": "f16"}


def pack_checkpoint(in_dir: str, out_dir: str, sparsity: Sparsity = Sparsity(), strict: bool = False) -> None:
    """Prunes (or, strict, verifies) and packs every expert weight of a checkpoint folder into out_dir,
    copying everything else. No GPU needed."""
    _lib.call("samoyeds_pack_checkpoint", os.fsencode(in_dir), os.fsencode(out_dir), sparsity.V, sparsity.N,
              sparsity.M, int(strict))


def _invalid(message: str):
    return _lib.InvalidArgumentError(1, "samoyeds: " + message)


def _header(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            return json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        raise _invalid(f"{path}: not a readable safetensors file ({e})") from None


class PackedCheckpoint:
    """A packed checkpoint folder: its pattern and dtype, and each layer's packed experts by name."""

    def __init__(self, path: str):
        self.path = path
        index = os.path.join(path, _INDEX)
        weight_map = None
        if os.path.exists(index):
            try:
                with open(index) as f:
                    weight_map = dict(json.load(f)["weight_map"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise _invalid(f"{index}: not a readable index ({e!r})") from None
        shard_names = sorted(set(weight_map.values())) if weight_map else ["model.safetensors"]
        self._tensors: dict[str, tuple[str, dict]] = {}  # name -> (file, header entry)
        metadata = None
        for file in shard_names:
            header = _header(os.path.join(path, file))
            metadata = metadata or header.pop("__metadata__", {})
            header.pop("__metadata__", None)
            for name, entry in header.items():
                self._tensors[name] = (file, entry)
        if not metadata or metadata.get("samoyeds.format") != "packed":
            raise _invalid(f"{path} is not a packed checkpoint (run samoyeds pack)")
        if metadata.get("samoyeds.format_version") != "1":
            raise _lib.UnsupportedError(
                4, f"samoyeds: {path}: packed format version {metadata.get('samoyeds.format_version')}; this reads 1")
        self.sparsity = _parse_sparsity(metadata.get("samoyeds.sparsity", ""))
        # (stack prefix, layer) -> expert -> role -> weight name; the same keys for shared experts and gates.
        self.experts: dict[tuple[str, int], dict[int, dict[str, str]]] = {}
        self.shared: dict[tuple[str, int], dict[str, str]] = {}
        self.shared_gates: dict[tuple[str, int], str] = {}
        for name in self._tensors:
            if m := _GATE.match(name):
                self.shared_gates[(m[1], int(m[2]))] = name
            if not name.endswith(".weight.values"):
                continue
            weight = name[: -len(".values")]
            if m := _EXPERT.match(weight):
                self.experts.setdefault((m[1], int(m[2])), {}).setdefault(int(m[3]), {})[_ROLE[m[4]]] = weight
            elif m := _SHARED.match(weight):
                self.shared.setdefault((m[1], int(m[2])), {})[_ROLE[m[3]]] = weight

    def shape(self, weight: str) -> tuple[int, int]:
        """The dense [m, k] of a packed weight."""
        if weight + ".shape" not in self._tensors:
            raise _invalid(f"{self.path} holds no packed weight {weight}")
        file, entry = self._tensors[weight + ".shape"]
        begin, _ = entry["data_offsets"]
        path = os.path.join(self.path, file)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            f.seek(8 + n + begin)
            return struct.unpack("<2q", f.read(16))

    def dtype(self, weight: str) -> str:
        return _DTYPE[self._tensors[weight + ".values"][1]["dtype"]]

    def key(self, layer: int, prefix: str | None = None) -> tuple[str, int]:
        """The (stack prefix, layer) of layer number `layer`; with several stacks holding that number,
        the one whose prefix is `prefix`, else a refusal (which stack is meant is not guessed)."""
        keys = [k for k in self.experts if k[1] == layer]
        if prefix is not None and (prefix, layer) in self.experts:
            return (prefix, layer)
        if len(keys) == 1:
            return keys[0]
        raise _invalid(f"{self.path}: {'no' if not keys else len(keys)} stacks of packed experts for layer {layer}"
                       + (f" ({', '.join(repr(k[0]) for k in keys)})" if keys else ""))

    def layer(self, rt: Runtime, key: tuple[str, int], *, top_k: int, shared: bool = False,
              expert_parallel: bool = False, **routing) -> MoeLayer:
        """The MoE layer `key` (PackedCheckpoint.key) with its packed experts, and its shared expert (and
        gate) where `shared`; routing fields as MoeConfig's."""
        experts = self.experts[key]
        count = max(experts) + 1
        names = {}
        for role in ("w1", "w3", "w2"):
            missing = [e for e in range(count) if role not in experts.get(e, {})]
            if missing:
                raise _invalid(f"{self.path}: layer {key[1]} has no packed {role} for expert {missing[0]}")
            names[role] = [experts[e][role] for e in range(count)]
        ffn, hidden = self.shape(names["w1"][0])
        shared_names, gate, shared_ffn = None, None, 0
        if shared:
            roles = self.shared.get(key, {})
            if set(roles) != {"w1", "w3", "w2"}:
                raise _invalid(f"{self.path}: layer {key[1]} has no packed shared expert")
            shared_names = [roles[r] for r in ("w1", "w3", "w2")]
            shared_ffn = self.shape(shared_names[0])[0]
            gate = self.shared_gates.get(key)
        config = MoeConfig(hidden=hidden, ffn=ffn, experts=count, top_k=top_k, dtype=self.dtype(names["w1"][0]),
                           sparsity=self.sparsity, n_shared=int(shared), shared_ffn=shared_ffn,
                           expert_parallel=expert_parallel, **routing)
        return MoeLayer.load_packed(rt, config, self.path, names["w1"], names["w3"], names["w2"], shared_names, gate)


def _parse_sparsity(text: str) -> Sparsity:
    m = re.fullmatch(r"(\d+):(\d+)x2:4/V(\d+)", text)
    if not m:
        raise _invalid(f"unreadable sparsity {text!r} in a packed checkpoint")
    return Sparsity(V=int(m[3]), N=int(m[1]), M=int(m[2]))
