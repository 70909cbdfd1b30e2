"""Expert parallelism (samoyeds.parallel): each rank's layer time against
the one-GPU layer, and the part of it the exchange takes. One process per
GPU, launched by torchrun (or alone: world size 1):

  NCCL_NVLS_ENABLE=0 PYTHONPATH=python SAMOYEDS_LIBRARY=build/libsamoyeds.so \\
    torchrun --nproc-per-node N bench/ep_bench.py [--model mixtral|deepseek-v3] [--tokens 64,4096,32768] [--csv F]

Per T (tokens per rank), CUDA-event medians with L2 flushed before each call,
on rank 0: the one-GPU layer over all the experts on T tokens (every rank
holds it, so world * E experts must fit one GPU), the expert-parallel layer
(all ranks call it together), and, within it, the routed experts' own time
(the local layer on the rows this rank received). The rest (rest_ms) is the
router, planning, the all-to-alls, the host's waits, the sum, the shared
experts (DeepSeek-V3's is as much work as its routed ones) and any wait for
a slower rank: an upper bound on what the exchange costs.
Weights random, pruned to the pattern; a timing, not a check (tests check).
"""
import argparse
import os

import torch
import torch.distributed as dist

from samoyeds.nn import SparseMoE
from samoyeds.parallel import ExpertParallelMoE
from samoyeds.pattern import prune
from torch_bench_common import cuda_median_ms, write_csv

MODELS = {
    "mixtral": dict(experts=8, top_k=2, hidden=4096, ffn=14336, shared=0,
                    routing=dict(routing="softmax_topk", renormalize=True)),
    "deepseek-v3": dict(experts=256, top_k=8, hidden=7168, ffn=2048, shared=1,
                        routing=dict(routing="sigmoid_group_topk", renormalize=True, groups=8, topk_groups=4,
                                     routed_scaling_factor=2.5)),
}


def weights(c, g):
    """The model's experts (every rank builds all: the one-GPU layer needs them), pruned, on the GPU, made
    a few experts at a time (DeepSeek-V3's whole float32 draw would not fit beside them)."""
    E, H, I = c["experts"], c["hidden"], c["ffn"]

    def w(rows, cols, n=E):
        out = torch.empty(n, rows, cols, dtype=torch.bfloat16, device="cuda")
        for e in range(0, n, 8):
            out[e:e + 8] = prune((torch.randn(min(8, n - e), rows, cols, generator=g, device="cuda") * 0.02)
                                 .to(torch.bfloat16))
        return out

    full = (w(I, H), w(I, H), w(H, I))
    shared = (w(I, H, 1), w(I, H, 1), w(H, I, 1)) if c["shared"] else None
    return full, shared


def experts_time(ep, x, logits, reps, flush):
    """The local layer's time on the rows this rank receives in a forward (captured from one)."""
    captured = []
    orig = ep.local.forward_routed
    ep.local.forward_routed = lambda r, i, w: (captured.append((r.clone(), i.clone(), w.clone())), orig(r, i, w))[1]
    try:
        ep(x, logits)
    finally:
        del ep.local.forward_routed  # the class's method again
    pieces = [p for p in captured if p[0].shape[0]]
    if not pieces:
        return 0, 0.0
    ms = cuda_median_ms(lambda: [orig(*p) for p in pieces], reps, flush)
    return sum(p[0].shape[0] for p in pieces), ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mixtral", choices=sorted(MODELS))
    ap.add_argument("--tokens", default="64,4096,32768")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--csv")
    a = ap.parse_args()
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    if "RANK" not in os.environ:  # alone: a group of one
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29571")
    local = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    c = MODELS[a.model]
    E, K, H = c["experts"], c["top_k"], c["hidden"]
    g = torch.Generator(device="cuda").manual_seed(5)
    (w1, w3, w2), shared = weights(c, g)
    bias = (torch.rand(E, generator=g, device="cuda") * 0.1).tolist() if a.model == "deepseek-v3" else None
    one_gpu = SparseMoE(w1, w3, w2, top_k=K, choice_bias=bias, shared=shared, strict=True, **c["routing"])
    if E % world:
        raise SystemExit(f"{a.model}: {E} experts do not split over {world} ranks")
    per = E // world
    mine = slice(rank * per, (rank + 1) * per)
    ep = ExpertParallelMoE(w1[mine], w3[mine], w2[mine], experts=E, top_k=K, choice_bias=bias, shared=shared,
                           strict=True, **c["routing"])
    del w1, w3, w2, shared
    torch.cuda.empty_cache()
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    rows = []
    for T in [int(t) for t in a.tokens.split(",")]:
        x = (torch.randn(T, H, generator=g, device="cuda") * 0.5).to(torch.bfloat16)
        logits = torch.randn(T, E, generator=g, device="cuda")
        dist.barrier()
        t_one = cuda_median_ms(lambda: one_gpu(x, logits), a.reps, flush.zero_)
        dist.barrier()
        t_ep = cuda_median_ms(lambda: ep(x, logits), a.reps, lambda: (flush.zero_(), dist.barrier()))
        dist.barrier()
        recv, t_experts = experts_time(ep, x, logits, a.reps, flush.zero_)
        ep.check_errors()
        row = dict(model=a.model, world=world, rank=rank, T=T, received_rows=recv, one_gpu_ms=round(t_one, 4),
                   ep_ms=round(t_ep, 4), ep_experts_ms=round(t_experts, 4),
                   rest_ms=round(t_ep - t_experts, 4), ep_over_one_gpu=round(t_ep / t_one, 3))
        if rank == 0:
            print(row, flush=True)
        rows.append(row)
    if a.csv and rank == 0:
        write_csv(a.csv, rows)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
