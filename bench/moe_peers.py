"""A model's whole MoE layer, samoyeds against its dense peers on the same weights, tokens and routing, in
one process (issue: models, item 6): one command prints ours, torch._grouped_mm and cuBLAS side by side.

  PYTHONPATH=python SAMOYEDS_LIBRARY=build/libsamoyeds.so \\
    python3 bench/moe_peers.py [--models qwen3-30b-a3b,deepseek-v3] [--tokens 1,8,...,8192] [--csv FILE]

- samoyeds: SparseMoE.forward from router logits (1:2 rows x 2:4, V = 128): the model's routing on the
  GPU, both projections, the combine, shared experts; samoyeds_no_pdl the same captured without
  programmatic dependent launch (the peers do not use it), so that what it saves is seen apart.
- torch layer: a dense layer as transformers' "grouped_mm" experts compute it from the routing (sort by
  expert, torch._grouped_mm with gate and up in one [E, 2I, H] weight, SiLU-and-mul, torch._grouped_mm,
  weighted combine) plus ungated shared experts; without Qwen2-MoE's shared gate and gpt-oss's biases
  and clamp, which it would only make slower.
- torch._grouped_mm: those two grouped GEMMs alone (tokens sorted beforehand, untimed), plus the shared
  experts' GEMMs.
- cuBLAS grouped (cublasGemmGroupedBatchedEx) and per-expert loop: run-moe's dense peer
  (tuner/dense_moe_baseline) by ctypes through build/bench/libsamoyeds_bench_peers.so
  (SAMOYEDS_BENCH_PEERS), on the same device weights.
All but the torch layer run GEMMs only: a lower bound on a dense layer, so x_best_dense (against the
fastest of them) is conservative.

Shapes and routing come from configs/models/<model>.yaml. Weights are random bf16 (N(0, 0.02)); router
logits a shuffled ladder per token (no ties; float where the model's router is); a choice bias from
+-0.01 (balanced). The peers take the model's routing computed here in PyTorch; ours routes on the GPU.
Before timing, ours is checked once against a float32 layer on the pruned weights and PyTorch's routing
(four sampled tokens): it fails where ours picks other experts or weights. Times are CUDA-event medians
of --reps replays of a CUDA graph of one call per side (eager where a side cannot be captured; the row
says), a 256 MB buffer cleared before each (L2 flushed); ratios are of this run only.
"""
import argparse
import ctypes
import os
import pathlib
import sys

import torch
import torch.nn.functional as F
import yaml

import samoyeds
from samoyeds.nn import SparseMoE
from samoyeds.pattern import prune
from torch_bench_common import cuda_median_ms, write_csv

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_peers():
    path = os.environ.get("SAMOYEDS_BENCH_PEERS", str(ROOT / "build/bench/libsamoyeds_bench_peers.so"))
    lib = ctypes.CDLL(path)
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    lib.samoyeds_bench_last_error.restype = ctypes.c_char_p
    lib.samoyeds_bench_dense_create.argtypes = [ctypes.POINTER(P), ctypes.c_int, I64, I64, ctypes.c_int, P, P, P,
                                                ctypes.c_int, I64, P, P, P]
    lib.samoyeds_bench_dense_set_tokens.argtypes = [P, P, I64, I64, ctypes.c_int, P]
    lib.samoyeds_bench_dense_enqueue.argtypes = [P, ctypes.c_int, P]
    lib.samoyeds_bench_dense_destroy.argtypes = [P]
    lib.samoyeds_bench_dense_destroy.restype = None
    return lib


def checked(lib, rc):
    if rc != 0:
        raise RuntimeError("cuBLAS peer: " + lib.samoyeds_bench_last_error().decode())


def ptr_array(views):
    return (ctypes.c_void_p * max(len(views), 1))(*[v.data_ptr() for v in views])


def graphed(fn):
    """fn captured in a CUDA graph, replayed: GPU time without the host's launch gaps (each side's host cost,
    Python included, would otherwise count at small T), as serving engines run decode. Eager where a side
    cannot be captured, and said so."""
    fn()
    torch.cuda.synchronize()
    try:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        return g.replay, "graph"
    except RuntimeError as e:
        # The capture's end reports only that it was invalidated; the cause is the exception before it.
        cause = f"{e.__context__}; " if e.__context__ is not None else ""
        print(f"  (not captured, timed eagerly: {cause}{e})", flush=True)
        torch.cuda.synchronize()
        return fn, "eager"


def renormalize(cfg):
    """A preset's renormalize, defaulting as tuner/model_presets.cpp does: on but for topk_softmax."""
    return bool(cfg.get("renormalize", cfg.get("routing", "softmax_topk") != "topk_softmax"))


def distinct_logits(T, E, dtype):
    """Router logits without ties (a token's experts take a shuffled ladder of steps of 1/32, exact in bf16),
    so PyTorch's top-k, whose order for ties is not defined, picks what ours picks."""
    ladder = torch.rand(T, E, device="cuda").argsort(dim=1).float()
    return ((ladder - E / 2) / 32).to(dtype)


def route(logits, cfg, bias):
    """The model's routing (docs/models.md), as its reference computes it: ids [T, K], weights [T, K]."""
    K, method = cfg["top_k"], cfg.get("routing", "softmax_topk")
    lf = logits.float()
    if method == "softmax_topk":
        w, ids = lf.softmax(-1).topk(K, dim=-1)
        if renormalize(cfg):
            w = w / w.sum(-1, keepdim=True)
    elif method == "topk_softmax":
        v, ids = lf.topk(K, dim=-1)
        w = v.softmax(-1)
    elif method == "sigmoid_group_topk":
        s = lf.sigmoid()
        choice = s + (bias if bias is not None else 0.0)
        G, TG = cfg.get("groups", 1), cfg.get("topk_groups", 1)
        if G > 1:
            T, E = choice.shape
            scores = choice.view(T, G, E // G).topk(2, dim=-1).values.sum(-1)
            keep = torch.zeros(T, G, dtype=torch.bool, device=lf.device)
            keep.scatter_(1, scores.topk(TG, dim=-1).indices, True)
            choice = choice.masked_fill(~keep.repeat_interleave(E // G, 1), float("-inf"))
        ids = choice.topk(K, dim=-1).indices
        w = s.gather(1, ids)
        if renormalize(cfg):
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
    else:
        raise ValueError(f"routing {method!r}")
    return ids.to(torch.int32), w * cfg.get("routed_scaling_factor", 1.0)


def expert_ffn(x, w1, w3, w2, cfg, biases=None):
    """One expert in float32: down(act(gate x, up x))."""
    g, u = x @ w1.float().T, x @ w3.float().T
    if cfg.get("expert_bias"):
        b1, b3, b2 = biases
        g, u = g + b1.float(), u + b3.float()
        a, lim = cfg["swiglu_alpha"], cfg["swiglu_limit"]
        g = g.clamp(max=lim)
        u = u.clamp(-lim, lim)
        return ((u + 1) * g * torch.sigmoid(a * g)) @ w2.float().T + b2.float()
    return (F.silu(g) * u) @ w2.float().T


def check_ours(moe, x, logits, ids, wts, gate_up, down, shared, shared_gate, biases, cfg, tokens=4):
    """Ours on a few tokens against float32 on the pruned weights; returns the relative error."""
    I = down.shape[2]
    y = moe(x, logits).float()
    pick = torch.linspace(0, x.shape[0] - 1, min(tokens, x.shape[0])).long().unique()
    err, ref_norm = 0.0, 0.0
    pruned = {}  # expert -> its three pruned matrices

    def expert(e):
        if e not in pruned:
            pruned[e] = (prune(gate_up[e, :I]), prune(gate_up[e, I:]), prune(down[e]))
        return pruned[e]

    for t in pick.tolist():
        xt = x[t:t + 1].float()
        ref = torch.zeros(1, x.shape[1], device=x.device)
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            b = None if biases is None else tuple(bb[e] for bb in biases)
            ref += float(wts[t, j]) * expert_ffn(xt, *expert(e), cfg, b)
        if shared is not None:
            s13, s2 = shared
            Is = s2.shape[2]
            for s in range(s13.shape[0]):
                out = expert_ffn(xt, prune(s13[s, :Is]), prune(s13[s, Is:]), prune(s2[s]), {})
                if shared_gate is not None:
                    out = out * torch.sigmoid(xt @ shared_gate.float())
                ref += out
        err += float((y[t] - ref[0]).square().sum())
        ref_norm += float(ref.square().sum())
    return (err / max(ref_norm, 1e-30)) ** 0.5


def bench_model(name, tokens, reps, peers, rows, csv_path):
    cfg = yaml.safe_load((ROOT / "configs/models" / f"{name}.yaml").read_text())
    H, I, E, K = cfg["hidden_size"], cfg["ffn_size"], cfg["experts"], cfg["top_k"]
    S, Is = cfg.get("shared_experts", 0), cfg.get("shared_ffn_size", 0)
    torch.manual_seed(0)
    bf16 = dict(device="cuda", dtype=torch.bfloat16)
    gate_up = torch.randn(E, 2 * I, H, **bf16) * 0.02  # transformers' layout: gate rows first
    down = torch.randn(E, H, I, **bf16) * 0.02
    shared = (torch.randn(S, 2 * Is, H, **bf16) * 0.02, torch.randn(S, H, Is, **bf16) * 0.02) if S else None
    shared_gate = torch.randn(H, **bf16) * 0.03 if cfg.get("shared_expert_gate") else None
    bias = (torch.rand(E, device="cuda") - 0.5) * 0.02 if cfg.get("choice_bias") else None
    biases = tuple(torch.randn(E, n, **bf16) * 0.1 for n in (I, I, H)) if cfg.get("expert_bias") else None
    kwargs = {}
    if cfg.get("expert_bias"):
        kwargs = dict(activation="clamped_swiglu", swiglu_alpha=cfg["swiglu_alpha"],
                      swiglu_limit=cfg["swiglu_limit"], biases=biases)
    moe = SparseMoE(gate_up[:, :I], gate_up[:, I:], down, top_k=K, routing=cfg.get("routing", "softmax_topk"),
                    renormalize=renormalize(cfg), groups=cfg.get("groups", 1),
                    topk_groups=cfg.get("topk_groups", 1),
                    routed_scaling_factor=cfg.get("routed_scaling_factor", 1.0), choice_bias=bias,
                    shared=(shared[0][:, :Is], shared[0][:, Is:], shared[1]) if S else None,
                    shared_gate=shared_gate, **kwargs)
    dense_bytes = (E * 3 * H * I + S * 3 * H * Is) * 2
    print(f"{cfg.get('display_name', name)}: H {H}, I {I}, {E} experts, top-{K}, {S} shared; dense "
          f"{dense_bytes / 1e9:.2f} GB, packed {moe.device_bytes / 1e9:.2f} GB", flush=True)
    w13 = [gate_up[e, :I] for e in range(E)], [gate_up[e, I:] for e in range(E)], [down[e] for e in range(E)]
    s13 = ([shared[0][s, :Is] for s in range(S)], [shared[0][s, Is:] for s in range(S)],
           [shared[1][s] for s in range(S)]) if S else ([], [], [])
    handle = ctypes.c_void_p()
    checked(peers, peers.samoyeds_bench_dense_create(ctypes.byref(handle), 1, H, I, E, *map(ptr_array, w13), S, Is,
                                                     *map(ptr_array, s13)))
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    try:
        for T in tokens:
            x = torch.randn(T, H, **bf16)
            logits = distinct_logits(T, E, torch.float32 if cfg.get("router_logits") == "f32" else torch.bfloat16)
            ids, wts = route(logits, cfg, bias)
            # Ours routes itself; the check below holds only where it chose the experts and weights given here.
            with torch.no_grad():
                moe(x, logits)  # warm: this bucket's kernels load or compile
                rel = check_ours(moe, x, logits, ids, wts, gate_up, down, shared, shared_gate, biases, cfg)
            flat = ids.flatten().long()
            order = flat.argsort(stable=True)
            xs = x[order // K].contiguous()
            offs = torch.bincount(flat, minlength=E).cumsum(0).to(torch.int32)
            h = torch.randn(T * K, I, **bf16)
            hs = torch.randn(T, Is, **bf16) if S else None

            def torch_peer():
                torch._grouped_mm(xs, gate_up.transpose(1, 2), offs=offs)
                torch._grouped_mm(h, down.transpose(1, 2), offs=offs)
                for s in range(S):
                    x @ shared[0][s].T
                    hs @ shared[1][s].T

            ones = torch.ones(T * K, dtype=torch.int32, device="cuda")

            def torch_layer():
                # The whole dense layer as transformers' grouped_mm experts compute it, given the routing:
                # sort by expert, both projections, SiLU-and-mul, weights, combine (no host sync, so capturable).
                flat_ids = ids.flatten().long()
                sort = flat_ids.argsort(stable=True)
                counts = torch.zeros(E, dtype=torch.int32, device="cuda").index_add_(0, flat_ids, ones)
                gu = torch._grouped_mm(x[sort // K], gate_up.transpose(1, 2), offs=counts.cumsum(0, dtype=torch.int32))
                z = torch._grouped_mm(F.silu(gu[:, :I]) * gu[:, I:], down.transpose(1, 2),
                                      offs=counts.cumsum(0, dtype=torch.int32))
                y = torch.zeros_like(x).index_add_(0, sort // K, z * wts.flatten()[sort, None].to(z.dtype))
                for s in range(S):
                    y += (F.silu(x @ shared[0][s, :Is].T) * (x @ shared[0][s, Is:].T)) @ shared[1][s].T
                return y

            x_host = x.cpu().view(torch.int16).contiguous()
            ids_host = ids.cpu().contiguous()
            checked(peers, peers.samoyeds_bench_dense_set_tokens(handle, x_host.data_ptr(), T, H, K,
                                                                 ids_host.data_ptr()))

            def cublas(grouped):
                stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)  # the capture's, in a graph
                checked(peers, peers.samoyeds_bench_dense_enqueue(handle, grouped, stream))

            def ours_without_pdl():  # captured (or run) with programmatic dependent launch off
                samoyeds.set_programmatic_launch(False)
                try:
                    return moe(x, logits)
                finally:
                    samoyeds.set_programmatic_launch(True)

            sides = {"samoyeds_ms": lambda: moe(x, logits), "samoyeds_no_pdl_ms": ours_without_pdl,
                     "torch_layer_ms": torch_layer,
                     "torch_grouped_mm_ms": torch_peer,
                     "cublas_grouped_ms": lambda: cublas(1), "cublas_loop_ms": lambda: cublas(0)}
            times, modes = {}, []
            with torch.no_grad():
                for key, fn in sides.items():
                    run, mode = graphed(fn)
                    times[key] = cuda_median_ms(run, reps, flush.zero_)
                    modes.append(mode)
            moe.check_errors()
            best = min(times["torch_grouped_mm_ms"], times["cublas_grouped_ms"], times["cublas_loop_ms"])
            row = dict(model=name, tokens=T, **{k: round(v, 4) for k, v in times.items()},
                       x_torch_layer=round(times["torch_layer_ms"] / times["samoyeds_ms"], 2),
                       x_torch_grouped_mm=round(times["torch_grouped_mm_ms"] / times["samoyeds_ms"], 2),
                       x_cublas_grouped=round(times["cublas_grouped_ms"] / times["samoyeds_ms"], 2),
                       x_best_dense=round(best / times["samoyeds_ms"], 2),
                       experts_hit=int((offs.diff(prepend=offs.new_zeros(1)) > 0).sum()), rel_error=f"{rel:.1e}",
                       timed="/".join(modes))
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            if csv_path:  # every row as it comes: a later abort loses nothing
                write_csv(csv_path, rows)
            if rel > 2e-2:
                raise RuntimeError(f"{name} T={T}: ours differs from the float32 layer by {rel:.1e}")
    finally:
        peers.samoyeds_bench_dense_destroy(handle)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="qwen3-30b-a3b,deepseek-v3")
    p.add_argument("--tokens", default="1,8,64,256,1024,4096,8192")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--csv")
    a = p.parse_args()
    print("command:", " ".join(sys.argv))
    print("device", torch.cuda.get_device_name(), "torch", torch.__version__, "samoyeds", samoyeds.__version__,
          flush=True)
    peers = load_peers()
    rows = []
    for name in a.models.split(","):
        bench_model(name, [int(t) for t in a.tokens.split(",")], a.reps, peers, rows, a.csv)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
