"""Packed checkpoints from Python without a GPU or PyTorch: the library's
packer over a small checkpoint written here, read back by PackedCheckpoint."""
import json
import os
import random
import struct
from types import SimpleNamespace

import pytest

import samoyeds
from samoyeds import checkpoint
from samoyeds.handles import Sparsity


def bf16_bytes(n, seed):
    rng = random.Random(seed)
    return b"".join(struct.pack("<f", rng.gauss(0, 0.05))[2:] for _ in range(n))  # the upper half of a float


def write_safetensors(path, tensors):
    """tensors: name -> (dtype, shape, bytes)."""
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


@pytest.fixture
def dense_checkpoint(tmp_path):
    d = tmp_path / "dense"
    d.mkdir()
    tensors = {"model.embed_tokens.weight": ("BF16", [4, 64], bf16_bytes(256, 0))}
    for layer in (0, 1):
        for e in (0, 1):
            p = f"model.layers.{layer}.block_sparse_moe.experts.{e}."
            tensors[p + "w1.weight"] = ("BF16", [96, 128], bf16_bytes(96 * 128, 10 * layer + e))
            tensors[p + "w3.weight"] = ("BF16", [96, 128], bf16_bytes(96 * 128, 100 + 10 * layer + e))
            tensors[p + "w2.weight"] = ("BF16", [128, 96], bf16_bytes(96 * 128, 200 + 10 * layer + e))
    write_safetensors(d / "model.safetensors", tensors)
    (d / "config.json").write_text('{"model_type": "mixtral"}')
    return d


def test_pack_then_read_back_every_layers_experts(dense_checkpoint, tmp_path):
    out = tmp_path / "packed"
    checkpoint.pack_checkpoint(str(dense_checkpoint), str(out), Sparsity(64, 2, 4))
    assert (out / "config.json").exists()
    ckpt = checkpoint.PackedCheckpoint(str(out))
    assert ckpt.sparsity == Sparsity(64, 2, 4)
    assert sorted(ckpt.experts) == [("model.", 0), ("model.", 1)]
    assert sorted(ckpt.experts[("model.", 1)]) == [0, 1]
    assert set(ckpt.experts[("model.", 0)][1]) == {"w1", "w3", "w2"}
    w2 = ckpt.experts[("model.", 1)][0]["w2"]
    assert ckpt.shape(w2) == (128, 96) and ckpt.dtype(w2) == "bf16"
    assert ckpt.key(1) == ("model.", 1) and ckpt.key(1, "other.") == ("model.", 1)
    with pytest.raises(samoyeds.InvalidArgumentError, match="no stacks of packed experts for layer 5"):
        ckpt.key(5)
    # Without a runtime the spec (built from the checkpoint) passes and the runtime is refused.
    with pytest.raises(samoyeds.InvalidArgumentError, match="runtime, folder or name arrays are null"):
        ckpt.layer(SimpleNamespace(handle=None), ckpt.key(0), top_k=1)


def test_refusals_name_the_problem(dense_checkpoint, tmp_path):
    with pytest.raises(samoyeds.InvalidArgumentError, match="not a packed checkpoint"):
        checkpoint.PackedCheckpoint(str(dense_checkpoint))
    with pytest.raises(samoyeds.PatternViolationError, match="w1.weight"):
        checkpoint.pack_checkpoint(str(dense_checkpoint), str(tmp_path / "strict"), strict=True)
    with pytest.raises(samoyeds.InvalidArgumentError, match="output folder must differ"):
        checkpoint.pack_checkpoint(str(dense_checkpoint), str(dense_checkpoint))
    os.remove(dense_checkpoint / "model.safetensors")
    with pytest.raises(samoyeds.InvalidArgumentError, match="neither model.safetensors"):
        checkpoint.pack_checkpoint(str(dense_checkpoint), str(tmp_path / "x"))
