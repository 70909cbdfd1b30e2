"""Expert parallelism without a GPU: the dispatch plan, and the whole
exchange (dispatch, experts on their ranks, combine) over gloo between
processes on the host, with float64 experts standing in for the kernels.
Skipped without PyTorch."""
import datetime

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
dist = pytest.importorskip("torch.distributed", reason="PyTorch has no torch.distributed")
if not dist.is_available():
    pytest.skip("PyTorch was built without torch.distributed", allow_module_level=True)

from samoyeds.parallel import dispatch_combine, plan_dispatch  # noqa: E402
from spawn_ranks import run_ranks  # noqa: E402


def test_plan_sends_each_token_once_to_each_rank_holding_one_of_its_experts():
    ids = torch.tensor([[0, 5], [6, 7], [1, 0], [3, 4]])  # 8 experts over 4 ranks: 2 each
    p = plan_dispatch(ids, 2, 4)
    # (rank, token) pairs by rank, then token
    assert list(zip(p.rank.tolist(), p.token.tolist())) == [(0, 0), (0, 2), (1, 3), (2, 0), (2, 3), (3, 1)]
    assert p.counts.tolist() == [2, 1, 2, 1]
    assert p.local_ids.tolist() == [[0, -1], [1, 0], [1, -1], [-1, 1], [-1, 0], [0, 1]]
    assert p.local_ids.dtype == torch.int32


@pytest.mark.parametrize("world,per_rank,k", [(1, 8, 2), (4, 2, 2), (8, 1, 2), (4, 16, 8)])
def test_plan_on_random_ids_against_its_definition(world, per_rank, k):
    g = torch.Generator().manual_seed(world * 100 + k)
    T = 37
    ids = torch.stack([torch.randperm(world * per_rank, generator=g)[:k] for _ in range(T)])
    p = plan_dispatch(ids, per_rank, world)
    want = sorted({(int(e) // per_rank, t) for t in range(T) for e in ids[t]})
    assert list(zip(p.rank.tolist(), p.token.tolist())) == want
    assert p.counts.tolist() == [sum(1 for r, _ in want if r == q) for q in range(world)]
    for i, (r, t) in enumerate(want):
        expect = [int(e) - r * per_rank if int(e) // per_rank == r else -1 for e in ids[t]]
        assert p.local_ids[i].tolist() == expect


def test_ids_outside_the_model_go_nowhere_and_are_counted():
    # The router writes -1 for a token whose scores are not finite; raising here would leave the other
    # ranks waiting in the exchange.
    p = plan_dispatch(torch.tensor([[0, 8], [-1, 7], [-5, 9]]), 2, 4)
    assert list(zip(p.rank.tolist(), p.token.tolist())) == [(0, 0), (3, 1)]
    assert p.local_ids.tolist() == [[0, -1], [-1, 1]]
    assert int(p.dropped) == 4 and p.counts.tolist() == [1, 0, 0, 1]
    assert int(plan_dispatch(torch.tensor([[0, 7]]), 2, 4).dropped) == 0


H, PER_RANK, K = 16, 2, 3


def _experts(world):
    g = torch.Generator().manual_seed(7)
    return torch.randn(world * PER_RANK, H, H, generator=g, dtype=torch.float64)


def _tokens(rank, world):
    g = torch.Generator().manual_seed(100 + rank)
    T = 0 if rank == 1 and world > 2 else 3 + 5 * rank  # uneven; a rank with none sends and receives nothing
    x = torch.randn(T, H, generator=g, dtype=torch.float64)
    ids = torch.rand(T, world * PER_RANK, generator=g).argsort(1)[:, :K]  # k distinct experts a token
    w = torch.rand(T, K, generator=g, dtype=torch.float64).float()
    return x, ids, w


def _rank_main(rank, world, store, out):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        experts = _experts(world)
        mine = experts[rank * PER_RANK:(rank + 1) * PER_RANK]

        def experts_fn(rows, local_ids, weights):
            y = torch.zeros_like(rows)
            for i in range(rows.shape[0]):
                for j in range(K):
                    e = int(local_ids[i, j])
                    if e >= 0:
                        y[i] += float(weights[i, j]) * (mine[e] @ rows[i])
            return y

        x, ids, w = _tokens(rank, world)
        flag = torch.zeros(1, dtype=torch.int32)
        got = dispatch_combine(x, ids, w, PER_RANK, experts_fn, error_flag=flag)
        want = torch.zeros_like(x)
        for t in range(x.shape[0]):
            for j in range(K):
                want[t] += float(w[t, j]) * (experts[int(ids[t, j])] @ x[t])
        err = float((got.double() - want).abs().max() / want.abs().max()) if x.shape[0] else 0.0
        torch.save({"err": err, "T": x.shape[0], "rows": list(got.shape), "dtype": str(got.dtype),
                    "flag": int(flag)}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3, 4])  # 2 experts a rank, 3 a token: some ranks hold fewer than k
def test_dispatch_and_combine_over_gloo_equal_the_direct_sum(tmp_path, world):
    outs = run_ranks(_rank_main, world, tmp_path, 120)
    for r, out in enumerate(outs):
        res = torch.load(out)
        assert res["dtype"] == "torch.float32" and res["rows"] == [res["T"], H], (r, res)
        assert res["err"] < 1e-6, (r, res)  # float32 sums of float64 terms
        assert res["flag"] == 0, (r, res)
    assert world <= 2 or torch.load(outs[1])["T"] == 0
