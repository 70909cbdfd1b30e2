"""samoyeds.parallel: one MoE layer's experts spread over the ranks of a
torch.distributed process group (expert parallelism; NCCL between GPUs).

Rank r holds experts [r * E_local, (r + 1) * E_local) of the model's E. Each
rank routes its own tokens over all E (the library's router), then:
  1. plans: each token goes once to every rank that holds one of its k
     experts, rows ordered by rank, then by token (plan_dispatch);
  2. exchanges counts (one all-to-all) and reads them on the host:
     all-to-all with variable sizes needs them there (the host also waits
     for the plan's list of rows, whose length only the GPU knows);
  3. sends the token rows, and with each its k expert ids (local to the
     receiver, -1 where another rank holds the expert) and k weights;
  4. runs the grouped kernels over what it received (ids of -1 add nothing);
  5. sends each partial sum back (in the layer's dtype, as the kernels
     write it), and the token's own rank adds its partials in rank order,
     in float32, then its shared experts' output: the result does not depend
     on when the partials arrive. It differs from the one-GPU layer's by
     that rounding of the partials only.
Ids outside the model (the router writes -1 for a token whose scores are not
finite) go to no rank and set the error flag, as the one-GPU layer does;
nothing raises between collectives, so no rank is left waiting.
The exchange is plain torch (testable on the host over gloo); NVLink
multicast is not used (run with NCCL_NVLS_ENABLE=0).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from .handles import MoeConfig, Router, Sparsity, runtime

# One forward of the layer takes at most this many tokens (samoyeds.h); a
# rank may receive more, and runs them in pieces.
_MAX_LAYER_TOKENS = 65535


@dataclass
class DispatchPlan:
    """Where each token goes: row i of the send buffer is token `token[i]` for rank `rank[i]`,
    rows ordered by rank, then by token; `counts[r]` rows go to rank r."""

    token: torch.Tensor  # [S] int64
    rank: torch.Tensor  # [S] int64
    local_ids: torch.Tensor  # [S, k] int32: the receiver's expert index, -1 where another rank holds it
    counts: torch.Tensor  # [world] int64
    dropped: torch.Tensor  # [] int64: entries whose id lies outside the model (sent nowhere)


def plan_dispatch(topk_ids: torch.Tensor, experts_per_rank: int, world: int) -> DispatchPlan:
    """The plan for [T, k] global expert ids, experts partitioned in contiguous blocks of
    experts_per_rank over `world` ranks. An id outside [0, experts_per_rank * world) goes nowhere and
    is counted in `dropped` (a device tensor). The host waits for the GPU once, for the list's length."""
    if topk_ids.dim() != 2:
        raise ValueError(f"samoyeds: topk_ids must be [tokens, k], not {list(topk_ids.shape)}")
    ids = topk_ids.long()
    valid = (ids >= 0) & (ids < experts_per_rank * world)
    # An invalid entry's owner is a column past the ranks, dropped below.
    owner = torch.where(valid, torch.div(ids, experts_per_rank, rounding_mode="floor"), world)
    mask = torch.zeros(ids.shape[0], world + 1, dtype=torch.bool, device=ids.device)
    mask.scatter_(1, owner, True)
    mask = mask[:, :world]
    # nonzero() lists [rank, token] pairs in row-major order: by rank, then token.
    pairs = mask.t().nonzero()
    rank, token = pairs[:, 0], pairs[:, 1]
    mine = owner[token] == rank[:, None]
    local = torch.where(mine, ids[token] - rank[:, None] * experts_per_rank, torch.full_like(ids[token], -1))
    return DispatchPlan(token, rank, local.to(torch.int32), mask.sum(0), (~valid).sum())


def _all_to_all(out: torch.Tensor, inp: torch.Tensor, out_splits, in_splits, group) -> None:
    """all_to_all_single over dim 0 of contiguous tensors. Gloo (tests sharing one GPU, hosts without NCCL)
    exchanges host tensors, and not every dtype: its exchange goes through the host, as bytes."""
    if dist.get_backend(group) != "gloo":
        dist.all_to_all_single(out, inp, out_splits, in_splits, group=group)
        return
    host = torch.empty(out.shape, dtype=out.dtype)
    dist.all_to_all_single(host.view(torch.uint8), inp.cpu().view(torch.uint8), out_splits, in_splits, group=group)
    out.copy_(host)


def dispatch_combine(x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor, experts_per_rank: int,
                     experts_fn, group=None, error_flag: torch.Tensor | None = None) -> torch.Tensor:
    """sum_j topk_weights[t, j] * expert_{topk_ids[t, j]}(x[t]) as float32 [T, hidden], the experts computed on
    the ranks that hold them: experts_fn(rows [n, hidden], local_ids [n, k] int32 (-1: not here),
    weights [n, k] float32) -> [n, hidden] is this rank's part for the rows it receives. Collective:
    every rank of `group` calls it, with its own tokens. Ids outside the model add nothing and set bit 0
    of error_flag (an int32 tensor of one element) where one is given."""
    world = dist.get_world_size(group)
    T, hidden = x.shape
    k = topk_ids.shape[1]
    plan = plan_dispatch(topk_ids, experts_per_rank, world)
    if error_flag is not None:
        error_flag.bitwise_or_((plan.dropped > 0).to(error_flag.dtype))
    recv_counts = torch.empty_like(plan.counts)
    _all_to_all(recv_counts, plan.counts, None, None, group)
    counts = torch.stack([plan.counts, recv_counts]).cpu()  # the sizes, on the host
    send, recv = counts[0].tolist(), counts[1].tolist()
    n_recv = sum(recv)
    # The rows, and beside them their k ids and k weights (the float bits as int32): one exchange each.
    meta = torch.cat([plan.local_ids, topk_weights.float()[plan.token].view(torch.int32)], dim=1)
    recv_meta = torch.empty(n_recv, 2 * k, dtype=torch.int32, device=x.device)
    _all_to_all(recv_meta, meta.contiguous(), recv, send, group)
    recv_x = torch.empty(n_recv, hidden, dtype=x.dtype, device=x.device)
    _all_to_all(recv_x, x[plan.token].contiguous(), recv, send, group)
    part = experts_fn(recv_x, recv_meta[:, :k].contiguous(), recv_meta[:, k:].contiguous().view(torch.float32))
    back = torch.empty(plan.token.numel(), hidden, dtype=part.dtype, device=x.device)
    _all_to_all(back, part.contiguous(), send, recv, group)
    y = torch.zeros(T, hidden, dtype=torch.float32, device=x.device)
    start = 0
    for n in send:  # rank by rank: a token appears at most once in each, so no two adds race
        if n:
            y.index_add_(0, plan.token[start:start + n], back[start:start + n].float())
        start += n
    return y


def _in_pieces(layer, rows, ids, weights):
    """layer.forward_routed over rows in pieces of at most one call's tokens."""
    out = torch.empty_like(rows)
    for s in range(0, rows.shape[0], _MAX_LAYER_TOKENS):
        e = s + _MAX_LAYER_TOKENS
        out[s:e] = layer.forward_routed(rows[s:e], ids[s:e], weights[s:e])
    return out


class ExpertParallelMoE(torch.nn.Module):
    """One rank's part of an expert-parallel MoE layer: this rank's experts w1, w3 [E_local, ffn, hidden]
    and w2 [E_local, hidden, ffn], which are experts [rank * E_local, (rank + 1) * E_local) of the model's
    `experts` = E_local * world. Routing arguments as SparseMoE's, over all `experts` (choice_bias: one value
    per model expert). shared: (w1, w3, w2) of always-on experts [S, shared_ffn, hidden] / [S, hidden,
    shared_ffn], held whole by every rank and run on its own tokens, stacked into one expert as the one-GPU
    layer stacks them. Not yet: a shared gate (Qwen2-MoE), the clamped SwiGLU (gpt-oss), FP8 experts.
    A serving stack calls forward on every rank of `group` with that rank's tokens (collective).
    """

    def __init__(self, w1, w3, w2, *, experts: int, top_k: int, group=None, routing: str = "softmax_topk",
                 renormalize: bool = False, groups: int = 1, topk_groups: int = 1,
                 routed_scaling_factor: float = 1.0, choice_bias=None, shared=None,
                 sparsity: Sparsity = Sparsity(), strict: bool = False, device=None, cache_path: str | None = None):
        super().__init__()
        from .nn import SparseMoE, choice_bias_values  # the exchange above needs only torch
        if not dist.is_initialized():
            raise RuntimeError("samoyeds: ExpertParallelMoE needs torch.distributed initialized "
                               "(init_process_group, NCCL between GPUs)")
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        local = w1.shape[0]
        if experts != local * self.world:
            raise ValueError(f"samoyeds: {experts} experts over {self.world} ranks: each holds {experts} / "
                             f"{self.world}, but this rank was given {local}")
        self.experts, self.top_k, self.experts_per_rank = experts, top_k, local
        self.local = SparseMoE(w1, w3, w2, top_k=top_k, sparsity=sparsity, strict=strict, expert_parallel=True,
                               device=device, cache_path=cache_path)
        self.shared = None
        if shared is not None:
            s1, s3, s2 = shared
            n, f, h = s1.shape
            # One expert of n * f rows: w2's blocks side by side.
            stacked = (s1.reshape(1, n * f, h), s3.reshape(1, n * f, h), torch.cat(list(s2), dim=1).unsqueeze(0))
            self.shared = SparseMoE(*stacked, top_k=1, sparsity=sparsity, strict=strict, device=device,
                                    cache_path=cache_path)
        dev = self.local.error_flag.device
        config = MoeConfig(hidden=w1.shape[2], ffn=w1.shape[1], experts=experts, top_k=top_k,
                           dtype=self.local.config.dtype, routing=routing, renormalize=renormalize, groups=groups,
                           topk_groups=topk_groups, routed_scaling_factor=routed_scaling_factor)
        bias = choice_bias_values(choice_bias)
        with torch.cuda.device(dev):
            self.router = Router(runtime(dev.index, cache_path), config, bias)
        # Bit 0: a routed id outside the model (the one-GPU layer's meaning).
        self.register_buffer("error_flag", torch.zeros(1, dtype=torch.int32, device=dev), persistent=False)

    def forward(self, x: torch.Tensor, router_logits: torch.Tensor) -> torch.Tensor:
        from . import ops
        flat = x.reshape(-1, x.shape[-1]).contiguous()
        ids, weights = ops.route(self.router, router_logits.reshape(flat.shape[0], self.experts).contiguous())
        return self.forward_routed(x, ids, weights)

    def forward_routed(self, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> torch.Tensor:
        """topk_ids [T, top_k]: the model's expert ids (0 to experts - 1) of this rank's tokens."""
        flat = x.reshape(-1, x.shape[-1]).contiguous()
        ids = topk_ids.reshape(flat.shape[0], self.top_k)
        weights = topk_weights.reshape(flat.shape[0], self.top_k)
        y = dispatch_combine(flat, ids, weights, self.experts_per_rank,
                             lambda rows, i, w: _in_pieces(self.local, rows, i, w), self.group, self.error_flag)
        if self.shared is not None:
            zero = torch.zeros(flat.shape[0], 1, dtype=torch.int32, device=flat.device)
            one = torch.ones(flat.shape[0], 1, dtype=torch.float32, device=flat.device)
            y += _in_pieces(self.shared, flat, zero, one).float()
        return y.to(x.dtype).view(x.shape)

    def check_errors(self) -> None:
        """Synchronizes, raises if a routed id fell outside the model or a kernel flagged an error since the
        last check, and clears the flags."""
        errors = []
        for layer in [self.local] + ([self.shared] if self.shared is not None else []):
            try:
                layer.check_errors()  # clears its flag either way
            except RuntimeError as e:
                errors.append(str(e))
        bits = int(self.error_flag.item())
        self.error_flag.zero_()
        if bits:
            errors.append(f"samoyeds: routed ids outside the model's {self.experts} experts added nothing "
                          f"(bits {bits:#x})")
        if errors:
            raise RuntimeError("; ".join(errors))
