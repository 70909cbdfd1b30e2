"""The dual-side pattern in PyTorch: prune dense weights the way the
library's magnitude packing does, so a model can run the same pruned
weights densely (the reference) and sparsely (strict packing verifies)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .handles import Sparsity


def prune(w: torch.Tensor, sparsity: Sparsity = Sparsity()) -> torch.Tensor:
    """[..., m, k] -> the same shape and dtype with, per group of M rows and V-column segment, the N
    rows of largest norm kept after 2:4 (the two largest magnitudes of every 4 columns)."""
    V, N, M = sparsity.V, sparsity.N, sparsity.M
    *lead, m, k = w.shape
    mp, kp = -(-m // M) * M, -(-k // V) * V
    # float64 and stable sorts: ties go to the lower column and row, as in format/pack.cpp.
    f = F.pad(w.double(), (0, kp - k, 0, mp - m))
    chunks = f.reshape(*lead, mp, kp // 4, 4)
    top2 = chunks.abs().sort(dim=-1, descending=True, stable=True).indices[..., :2]
    keep24 = torch.zeros_like(chunks, dtype=torch.bool).scatter_(-1, top2, True)
    f = (chunks * keep24).reshape(*lead, mp // M, M, kp // V, V)
    norms = f.square().sum(-1)  # [..., groups, M, segments]
    topn = norms.sort(dim=-2, descending=True, stable=True).indices.narrow(-2, 0, N)
    rows = torch.zeros_like(norms, dtype=torch.bool).scatter_(-2, topn, True)
    f = (f * rows.unsqueeze(-1)).reshape(*lead, mp, kp)[..., :m, :k]
    return f.to(w.dtype)
