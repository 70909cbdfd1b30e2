"""The torch ops and samoyeds.nn.SparseMoE on the GPU, against float64
references computed from the same pruned weights. Skipped without PyTorch
or a CUDA device."""
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import samoyeds  # noqa: E402
from samoyeds import ops  # noqa: E402
from samoyeds.nn import SparseMoE  # noqa: E402
from samoyeds.pattern import prune  # noqa: E402

DEV = torch.device("cuda")
E, K, H, I = 8, 2, 256, 384


def experts(dtype, scale=0.05, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    w1, w3 = (prune(torch.randn(E, I, H, generator=g) * scale).to(dtype) for _ in range(2))
    w2 = prune(torch.randn(E, H, I, generator=g) * scale).to(dtype)
    return w1.to(DEV), w3.to(DEV), w2.to(DEV)


def reference(x, ids, weights, w1, w3, w2):
    """float64: sum_k weights[t, k] * W2 (silu(W1 x) * W3 x) over each token's experts."""
    x, w1, w3, w2 = (t.double() for t in (x, w1, w3, w2))
    y = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for k in range(ids.shape[1]):
            e = int(ids[t, k])
            h = torch.nn.functional.silu(w1[e] @ x[t]) * (w3[e] @ x[t])
            y[t] += float(weights[t, k]) * (w2[e] @ h)
    return y


def rel_err(got, want):
    return float((got.double() - want).norm() / want.norm())


def routing(T, seed=1):
    g = torch.Generator(device="cpu").manual_seed(seed)
    logits = torch.randn(T, E, generator=g)
    w, ids = torch.softmax(logits, -1).topk(K, dim=-1)
    return logits, ids.to(DEV), w.to(DEV)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("T", [1, 37, 300])
def test_forward_routed_matches_float64(dtype, T):
    w1, w3, w2 = experts(dtype)
    moe = SparseMoE(w1, w3, w2, top_k=K, strict=True)
    x = torch.randn(T, H, device=DEV).to(dtype)
    _, ids, w = routing(T)
    y = moe.forward_routed(x, ids, w)
    assert y.dtype == dtype and y.shape == x.shape
    assert rel_err(y, reference(x, ids, w, w1, w3, w2)) < 1e-2
    moe.check_errors()


def test_forward_routes_on_the_gpu_as_softmax_topk():
    w1, w3, w2 = experts(torch.bfloat16)
    moe = SparseMoE(w1, w3, w2, top_k=K, renormalize=True, strict=True)
    T = 64
    x = torch.randn(T, H, device=DEV).to(torch.bfloat16)
    logits, _, _ = routing(T, seed=3)
    w, ids = torch.softmax(logits.double(), -1).topk(K, dim=-1)
    w = w / w.sum(-1, keepdim=True)
    y = moe(x, logits.to(DEV))  # float32 logits
    assert rel_err(y, reference(x, ids, w, w1, w3, w2)) < 1e-2


def test_strict_refuses_weights_outside_the_pattern_and_prune_is_what_the_library_keeps():
    g = torch.Generator(device="cpu").manual_seed(5)
    dense = (torch.randn(E, I, H, generator=g) * 0.05).to(torch.bfloat16).to(DEV)
    zeros = torch.zeros(E, H, I, dtype=torch.bfloat16, device=DEV)
    with pytest.raises(samoyeds.PatternViolationError, match="strict pack"):
        SparseMoE(dense, dense, zeros, top_k=K, strict=True)
    # Magnitude packing of the dense weights computes what prune() keeps.
    w2 = prune(torch.randn(E, H, I, generator=g) * 0.05).to(torch.bfloat16).to(DEV)
    pruned = SparseMoE(prune(dense), prune(dense), w2, top_k=K, strict=True)
    magnitude = SparseMoE(dense, dense, w2, top_k=K)
    x = torch.randn(16, H, device=DEV).to(torch.bfloat16)
    _, ids, w = routing(16)
    assert torch.equal(pruned.forward_routed(x, ids, w), magnitude.forward_routed(x, ids, w))


def test_out_of_range_ids_are_flagged_and_add_nothing():
    w1, w3, w2 = experts(torch.bfloat16)
    moe = SparseMoE(w1, w3, w2, top_k=K, strict=True)
    x = torch.randn(4, H, device=DEV).to(torch.bfloat16)
    ids = torch.tensor([[0, 1], [2, E], [3, 4], [5, 6]], device=DEV)
    w = torch.full((4, 2), 0.5, device=DEV)
    y = moe.forward_routed(x, ids, w)
    with pytest.raises(RuntimeError, match="out of range"):
        moe.check_errors()
    want = reference(x, torch.tensor([[0, 1], [2, 2], [3, 4], [5, 6]]), torch.tensor(
        [[0.5, 0.5], [0.5, 0.0], [0.5, 0.5], [0.5, 0.5]]), w1, w3, w2)
    assert rel_err(y, want) < 1e-2
    moe.check_errors()  # cleared
    # Expert-parallel: E and -1 name other ranks' experts: the same sums, no error.
    ep = SparseMoE(w1, w3, w2, top_k=K, strict=True, expert_parallel=True)
    ids[0, 1] = -1
    want = reference(x, torch.tensor([[0, 1], [2, 2], [3, 4], [5, 6]]), torch.tensor(
        [[0.5, 0.0], [0.5, 0.0], [0.5, 0.5], [0.5, 0.5]]), w1, w3, w2)
    assert rel_err(ep.forward_routed(x, ids, w), want) < 1e-2
    ep.check_errors()


def test_the_runtime_says_which_kernels_ran_and_whether_they_compiled():
    w1, w3, w2 = experts(torch.float16)
    moe = SparseMoE(w1, w3, w2, top_k=K, strict=True, cache_path="none")  # a runtime of its own, no disk cache
    before = moe.layer.runtime.kernels()
    x = torch.randn(8, H, device=DEV).to(torch.float16)
    _, ids, w = routing(8)
    moe.forward_routed(x, ids, w)
    loaded = moe.layer.runtime.kernels()[len(before):]
    names = " ".join(name for name, _, _ in loaded)
    assert "f16" in names and "grouped" in names and ("wgmma_sp" in names or "mma_sp" in names), names
    assert all(compiled and ms > 0 for _, compiled, ms in loaded), loaded
    moe.forward_routed(x, ids, w)  # warm: nothing new loads
    assert moe.layer.runtime.kernels() == before + loaded


def test_bad_tensors_raise_the_argument_name():
    w1, w3, w2 = experts(torch.bfloat16)
    moe = SparseMoE(w1, w3, w2, top_k=K, strict=True)
    x = torch.randn(4, H, device=DEV).to(torch.float16)
    ids = torch.zeros(4, K, dtype=torch.int32, device=DEV)
    w = torch.zeros(4, K, device=DEV)
    y = torch.empty_like(x)
    ws = ops.workspace_for(moe.layer, 4, DEV)
    with pytest.raises(samoyeds.InvalidArgumentError, match="x is torch.float16 but the layer is bf16"):
        torch.ops.samoyeds.moe_forward_routed(moe.layer.handle, x, ids, w, y, ws, moe.error_flag)
    xb = x.to(torch.bfloat16)
    with pytest.raises(samoyeds.InvalidArgumentError, match="topk_ids must be torch.int32"):
        torch.ops.samoyeds.moe_forward_routed(moe.layer.handle, xb, ids.long(), w, y.bfloat16(), ws, moe.error_flag)
    with pytest.raises(samoyeds.InvalidArgumentError, match="not a live MoeLayer"):
        torch.ops.samoyeds.moe_forward_routed(12345, xb, ids, w, y.bfloat16(), ws, moe.error_flag)
    with pytest.raises(samoyeds.InvalidArgumentError, match="workspace"):
        torch.ops.samoyeds.moe_forward_routed(moe.layer.handle, xb, ids, w, y.bfloat16(), ws[:16], moe.error_flag)
    with pytest.raises(ValueError, match="must both be"):  # a dense [T, E] weight tensor, E a multiple of k
        moe.forward_routed(xb, ids, torch.zeros(4, E, device=DEV))
    with pytest.raises(samoyeds.InvalidArgumentError, match="x must be on cuda:0, not cpu"):
        moe.forward_routed(xb.cpu(), ids, w)  # the module's eager path checks as the op does
    with pytest.raises(samoyeds.InvalidArgumentError, match="topk_weights must be on cuda:0"):
        torch.ops.samoyeds.moe_forward_routed(moe.layer.handle, xb, ids, w.cpu(), y.bfloat16(), ws, moe.error_flag)


def test_single_expert_ops_match_float64():
    dtype = torch.bfloat16
    w1, w3, w2 = experts(dtype)
    p1, p3, p2 = ops.pack(w1[0], strict=True), ops.pack(w3[0], strict=True), ops.pack(w2[0], strict=True)
    x = torch.randn(50, H, device=DEV).to(dtype)
    ids = torch.tensor([3, 0, 49, 7, 7, 20], dtype=torch.int32, device=DEV)
    xd = x.double()[ids.long()]
    y = torch.empty(6, I, dtype=dtype, device=DEV)
    torch.ops.samoyeds.ssmm(p1.handle, x, ids, y, silu=True)
    assert rel_err(y, torch.nn.functional.silu(xd @ w1[0].double().T)) < 1e-2
    h = torch.empty(6, I, dtype=dtype, device=DEV)
    torch.ops.samoyeds.gated_up(p1.handle, p3.handle, x, ids, h)
    want_h = torch.nn.functional.silu(xd @ w1[0].double().T) * (xd @ w3[0].double().T)
    assert rel_err(h, want_h) < 1e-2
    out = torch.zeros(50, H, dtype=dtype, device=DEV)
    p = torch.linspace(0.1, 0.6, 6, device=DEV)
    ws_bytes = samoyeds._lib.lib.samoyeds_down_combine_workspace_bytes(p2.handle, 6)
    ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8, device=DEV)
    torch.ops.samoyeds.down_combine(p2.handle, h, ids, p, out, ws)
    want = torch.zeros(50, H, dtype=torch.float64)
    for i, t in enumerate(ids.tolist()):
        want[t] += float(p[i]) * (w2[0].double().cpu() @ h[i].double().cpu())
    assert rel_err(out.cpu(), want) < 1e-2


def test_opcheck():
    w1, w3, w2 = experts(torch.bfloat16)
    moe = SparseMoE(w1, w3, w2, top_k=K, strict=True)
    T = 24
    x = torch.randn(T, H, device=DEV).to(torch.bfloat16)
    _, ids, w = routing(T)
    args = (moe.layer.handle, x, ids.int(), w.float(), torch.empty_like(x), ops.workspace_for(moe.layer, T, DEV),
            moe.error_flag)
    torch.library.opcheck(torch.ops.samoyeds.moe_forward_routed.default, args)
    logits = torch.randn(T, E, device=DEV)
    torch.library.opcheck(torch.ops.samoyeds.moe_forward.default,
                          (moe.layer.handle, x, logits, torch.empty_like(x), ops.workspace_for(moe.layer, T, DEV),
                           moe.error_flag))


def test_torch_compile_fullgraph_and_dynamic_tokens():
    w1, w3, w2 = experts(torch.bfloat16)
    moe = SparseMoE(w1, w3, w2, top_k=K, strict=True)

    def block(x, logits):
        return moe(x * 2.0, logits) + 1.0

    compiled = torch.compile(block, fullgraph=True, dynamic=True)
    for T in (5, 64, 129):
        x = torch.randn(T, H, device=DEV).to(torch.bfloat16)
        logits = torch.randn(T, E, device=DEV)
        assert torch.equal(compiled(x, logits), block(x, logits)), T


def test_cuda_graph_capture_replays_the_eager_result():
    w1, w3, w2 = experts(torch.bfloat16)
    moe = SparseMoE(w1, w3, w2, top_k=K, strict=True)
    T = 64
    x = torch.randn(T, H, device=DEV).to(torch.bfloat16)
    logits = torch.randn(T, E, device=DEV)
    eager = moe(x, logits)
    stream = torch.cuda.Stream()
    # Warm on the capture stream: kernels load and per-stream scratch grows outside the capture.
    with torch.cuda.stream(stream):
        moe(x, logits)
    stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        out = moe(x, logits)
    x.copy_(torch.randn(T, H, device=DEV).to(torch.bfloat16))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, moe(x, logits))
    assert not torch.equal(out, eager)
