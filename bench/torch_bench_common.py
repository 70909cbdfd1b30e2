"""What the PyTorch benchmark scripts share: CUDA-event medians and the CSV
they write."""
import csv
import statistics

import torch


def cuda_median_ms(fn, reps, before=None):
    """Median over `reps` calls of fn's GPU time by CUDA events; before() runs ahead of each, untimed
    (an L2 flush)."""
    times = []
    for _ in range(reps):
        if before is not None:
            before()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def write_csv(path, rows):
    """rows: dicts with the same keys, in the first row's order."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
