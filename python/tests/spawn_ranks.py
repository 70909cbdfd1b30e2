"""The expert-parallel tests' ranks: one function run in several fresh processes."""
import multiprocessing


def run_ranks(target, world, folder, timeout, *args):
    """target(rank, world, store, out, *args) in `world` spawned processes (CUDA and torch.distributed start
    clean in each): store is the file torch.distributed meets at, out the file rank r writes its result to
    (folder/rank{r}.pt). A rank still running after its join's timeout is killed: one left waiting on a dead
    peer must not hang the test run. Asserts every rank exited cleanly; returns the result files."""
    ctx = multiprocessing.get_context("spawn")
    outs = [folder / f"rank{r}.pt" for r in range(world)]
    procs = [ctx.Process(target=target, args=(r, world, str(folder / "store"), str(outs[r]), *args), daemon=True)
             for r in range(world)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return outs
