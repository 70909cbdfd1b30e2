"""samoyeds.parallel.ExpertParallelMoE on the GPU: world size 1 over NCCL,
and several ranks sharing this machine's one GPU over gloo (the exchange
staged through the host: NCCL takes one rank a GPU). Each rank's output is
checked against the one-GPU layer over all the experts, on the same weights,
routing and tokens, and each rank has its own number of tokens. The models'
routing and expert counts, at a small hidden size. Skipped without PyTorch
or a CUDA device."""
import datetime
import os

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
import torch.distributed as dist  # noqa: E402

from samoyeds.nn import SparseMoE  # noqa: E402
from samoyeds.parallel import ExpertParallelMoE  # noqa: E402
from samoyeds.pattern import prune  # noqa: E402
from spawn_ranks import run_ranks  # noqa: E402

MODELS = {
    # Mixtral-8x7B: 8 experts, top 2, softmax then renormalized; at 8 ranks one expert each.
    "mixtral": dict(experts=8, top_k=2, hidden=256, ffn=384, routing=dict(routing="softmax_topk", renormalize=True),
                    shared=0, bias=False),
    # DeepSeek-V3: 256 experts, top 8 of the best 4 of 8 groups, sigmoid with a choice bias, scaled by 2.5,
    # one shared expert.
    "deepseek-v3": dict(experts=256, top_k=8, hidden=256, ffn=128,
                        routing=dict(routing="sigmoid_group_topk", renormalize=True, groups=8, topk_groups=4,
                                     routed_scaling_factor=2.5),
                        shared=1, bias=True),
}


def _model(name):
    c = MODELS[name]
    g = torch.Generator().manual_seed(11)
    E, H, I = c["experts"], c["hidden"], c["ffn"]

    def w(*shape):
        return prune(torch.randn(*shape, generator=g) * 0.05).to(torch.bfloat16).cuda()

    w1, w3, w2 = w(E, I, H), w(E, I, H), w(E, H, I)
    shared = (w(1, 2 * I, H), w(1, 2 * I, H), w(1, H, 2 * I)) if c["shared"] else None
    bias = (torch.rand(E, generator=g) * 0.1).tolist() if c["bias"] else None
    return c, (w1, w3, w2), shared, bias


def _rank_main(rank, world, store, out, name, backend):
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    torch.cuda.set_device(0)
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        c, (w1, w3, w2), shared, bias = _model(name)
        E, K, H = c["experts"], c["top_k"], c["hidden"]
        full = SparseMoE(w1, w3, w2, top_k=K, choice_bias=bias, shared=shared, strict=True, **c["routing"])
        per = E // world
        mine = slice(rank * per, (rank + 1) * per)
        ep = ExpertParallelMoE(w1[mine], w3[mine], w2[mine], experts=E, top_k=K, choice_bias=bias, shared=shared,
                               strict=True, **c["routing"])
        g = torch.Generator().manual_seed(1000 + rank)
        T = 0 if rank == 1 and world > 2 else 17 + 29 * rank  # uneven; one rank with no tokens
        x = torch.randn(T, H, generator=g).to(torch.bfloat16).cuda()
        logits = torch.randn(T, E, generator=g).cuda()
        got = ep(x, logits)
        again = ep(x, logits)
        want = full(x, logits)
        ep.check_errors()
        full.check_errors()
        rel = float((got.double() - want.double()).norm() / want.double().norm()) if T else 0.0
        torch.save({"rel": rel, "same": bool(torch.equal(got, again)), "shape": list(got.shape), "T": T}, out)
    finally:
        dist.destroy_process_group()


def _run(tmp_path, name, world, backend):
    return [torch.load(o) for o in run_ranks(_rank_main, world, tmp_path, 240, name, backend)]


@pytest.mark.parametrize("name,world,backend", [("mixtral", 1, "nccl"), ("mixtral", 2, "gloo"), ("mixtral", 8, "gloo"),
                                                ("deepseek-v3", 1, "nccl"), ("deepseek-v3", 4, "gloo"),
                                                ("deepseek-v3", 8, "gloo")])
def test_each_rank_equals_the_one_gpu_layer(tmp_path, name, world, backend):
    for r, res in enumerate(_run(tmp_path, name, world, backend)):
        assert res["shape"] == [res["T"], MODELS[name]["hidden"]]
        # The partials of other ranks come back rounded to bf16 before the sum: rounding, not a mismatch.
        assert res["rel"] < 1e-2, (r, res)
        assert res["same"], (r, "two calls differ")


def test_it_needs_a_process_group():
    _, (w1, w3, w2), _, _ = _model("mixtral")
    with pytest.raises(RuntimeError, match="init_process_group"):
        ExpertParallelMoE(w1, w3, w2, experts=8, top_k=2)
