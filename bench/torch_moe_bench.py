"""PyTorch-side figures (issue: PyTorch): host time of one MoE layer call
through torch.ops.samoyeds against the bare C ABI call, and the experts of
a transformers MoE block, samoyeds against the model's own "grouped_mm"
implementation (torch._grouped_mm), on the same routing, at several T.

  PYTHONPATH=python SAMOYEDS_LIBRARY=build/libsamoyeds.so \\
    python3 bench/torch_moe_bench.py [--models mixtral,qwen3] [--tokens 1,64,4096] [--csv FILE]

CUDA-event medians with L2 flushed before each timed call; ratios are of
this run only.
"""
import argparse
import statistics
import sys
import time

import torch
import transformers

import samoyeds
from samoyeds import _lib, ops
from samoyeds.nn import SparseMoE
from torch_bench_common import cuda_median_ms, write_csv

MODELS = {
    # name: (config class, experts key, ffn key, hidden, ffn, experts, top_k)
    "mixtral": (transformers.MixtralConfig, "num_local_experts", "intermediate_size", 4096, 14336, 8, 2),
    "qwen3": (transformers.Qwen3MoeConfig, "num_experts", "moe_intermediate_size", 2048, 768, 128, 8),
}


def host_overhead(reps=2000):
    """Median host microseconds a call, tiny layer at T = 1 (the GPU is never the bottleneck)."""
    E, K, H, I = 8, 2, 256, 256
    w = [torch.randn(E, r, c, device="cuda").to(torch.bfloat16) * 0.05 for r, c in ((I, H), (I, H), (H, I))]
    moe = SparseMoE(*w, top_k=K)
    x = torch.randn(1, H, device="cuda").to(torch.bfloat16)
    ids = torch.tensor([[0, 1]], dtype=torch.int32, device="cuda")
    wts = torch.tensor([[0.5, 0.5]], device="cuda")
    y = torch.empty_like(x)
    ws = ops.workspace_for(moe.layer, 1, x.device)
    stream = torch.cuda.current_stream().cuda_stream
    ptrs = (moe.layer.handle, x.data_ptr(), 1, ids.data_ptr(), wts.data_ptr(), y.data_ptr(), ws.data_ptr(),
            ws.numel(), moe.error_flag.data_ptr(), stream)
    calls = {
        "c_abi_via_ctypes": lambda: _lib.lib.samoyeds_moe_forward_routed(*ptrs),
        "torch_op": lambda: torch.ops.samoyeds.moe_forward_routed(moe.layer.handle, x, ids, wts, y, ws,
                                                                  moe.error_flag),
        "checked_call_no_dispatcher": lambda: ops.moe_forward_routed_cuda(moe.layer.handle, x, ids, wts, y, ws,
                                                                          moe.error_flag),
        "module_forward_routed": lambda: moe.forward_routed(x, ids, wts),
        "ctypes_floor_2_args": lambda: _lib.lib.samoyeds_moe_workspace_bytes(moe.layer.handle, 1),
    }
    out = {}
    for name, fn in calls.items():
        for _ in range(50):
            fn()
        torch.cuda.synchronize()
        samples = []
        for _ in range(reps // 100):
            t0 = time.perf_counter()
            for _ in range(100):
                fn()
            samples.append((time.perf_counter() - t0) / 100 * 1e6)
            torch.cuda.synchronize()  # the queue never fills
        out[name] = statistics.median(samples)
    return out


def experts_vs_grouped_mm(name, tokens, rows):
    cls, ekey, fkey, H, I, E, K = MODELS[name]
    config = cls(hidden_size=H, **{ekey: E, fkey: I}, num_experts_per_tok=K, num_hidden_layers=1)
    module_cls = {"mixtral": "transformers.models.mixtral.modeling_mixtral.MixtralExperts",
                  "qwen3": "transformers.models.qwen3_moe.modeling_qwen3_moe.Qwen3MoeExperts"}[name]
    mod_path, cls_name = module_cls.rsplit(".", 1)
    experts = getattr(__import__(mod_path, fromlist=[cls_name]), cls_name)(config).to("cuda", torch.bfloat16)
    with torch.no_grad():
        experts.gate_up_proj.normal_(0, 0.02)
        experts.down_proj.normal_(0, 0.02)
    config._experts_implementation = "grouped_mm"
    inter = experts.gate_up_proj.shape[1] // 2
    moe = SparseMoE(experts.gate_up_proj.data[:, :inter], experts.gate_up_proj.data[:, inter:],
                    experts.down_proj.data, top_k=K)
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    for T in tokens:
        x = torch.randn(T, H, device="cuda").to(torch.bfloat16)
        logits = torch.randn(T, E, device="cuda")
        w, idx = torch.softmax(logits, -1).topk(K, dim=-1)
        with torch.no_grad():
            dense = cuda_median_ms(lambda: experts(x, idx, w.to(torch.bfloat16)), 20, flush.zero_)
            ours = cuda_median_ms(lambda: moe.forward_routed(x, idx, w), 20, flush.zero_)
        # Correctness is the tests' (python/tests): here the weights are not pruned for the dense side.
        rows.append(dict(model=name, tokens=T, grouped_mm_ms=round(dense, 4), samoyeds_ms=round(ours, 4),
                         x_grouped_mm=round(dense / ours, 2)))
        print(rows[-1], flush=True)
    del experts, moe


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="mixtral,qwen3")
    p.add_argument("--tokens", default="1,64,4096")
    p.add_argument("--csv")
    a = p.parse_args()
    print("device", torch.cuda.get_device_name(), "torch", torch.__version__, "transformers",
          transformers.__version__, "samoyeds", samoyeds.__version__)
    host = host_overhead()
    print("host us per call:", {k: round(v, 2) for k, v in host.items()})
    for path in ("torch_op", "checked_call_no_dispatcher", "module_forward_routed"):
        print(f"{path} above the bare C ABI call: {host[path] - host['c_abi_via_ctypes']:.2f} us")
    rows = []
    for name in filter(None, a.models.split(",")):  # --models "": host figures only
        experts_vs_grouped_mm(name, [int(t) for t in a.tokens.split(",")], rows)
    if a.csv and rows:
        write_csv(a.csv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
