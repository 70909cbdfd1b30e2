"""A whole transformers model, dense bf16 against sparsified by samoyeds, in
one process on one GPU (issue: PyTorch, item 5; the seed paper's end-to-end
claim): prefill time, decode time per token at several batch sizes, and how
many tokens of KV cache fit beside the weights each way.

  python3 bench/model_bench.py [--model mixtral-8x7b] [--layers 32] [--prefill 4096]
                               [--decode-batches 1,64] [--csv FILE]

The model is built from its config with random weights (no download). The
dense model runs first; then samoyeds.hf.sparsify packs its experts (1:2 rows
per 128 columns, then 2:4), frees the dense expert weights, and the same
measurements run again. Times are CUDA-event medians; the GPU, the command
line and every figure are printed for the log. A Mixtral-8x7B of 32 layers
needs a GPU of more than 93 GB (an H200); --layers takes fewer elsewhere.
"""
import argparse
import statistics
import sys

import torch
import transformers

import samoyeds.hf
from torch_bench_common import cuda_median_ms, write_csv

CONFIGS = {
    "mixtral-8x7b": lambda layers: transformers.MixtralConfig(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, num_local_experts=8, num_experts_per_tok=2, vocab_size=32000,
        max_position_embeddings=32768),
    "qwen3-30b-a3b": lambda layers: transformers.Qwen3MoeConfig(
        hidden_size=2048, moe_intermediate_size=768, intermediate_size=6144, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=4, head_dim=128, num_experts=128, num_experts_per_tok=8,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], vocab_size=151936,
        max_position_embeddings=32768),
}


def kv_bytes_per_token(config) -> int:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 2  # K and V, bf16


@torch.no_grad()
def measure(model, config, prefill: int, batches, steps: int, label: str):
    """Prefill ms, decode ms per step at each batch, and KV tokens that fit beside the weights."""
    vocab = config.vocab_size
    torch.cuda.synchronize()
    weights = torch.cuda.memory_allocated()
    ids = torch.randint(0, vocab, (1, prefill), device="cuda")
    model(ids, use_cache=False)  # warm: kernels of this prefill's buckets load or compile here
    torch.cuda.reset_peak_memory_stats()
    prefill_ms = cuda_median_ms(lambda: model(ids, use_cache=False), 3)
    # What a prefill of this length needs beyond the weights (activations), kept free beside the cache.
    activations = torch.cuda.max_memory_allocated() - weights
    free, total = torch.cuda.mem_get_info()
    kv_tokens = int((free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated() - activations)
                    // kv_bytes_per_token(config))
    row = {"model": label, "weights_gb": round(weights / 1e9, 2), "prefill_tokens": prefill,
           "prefill_ms": round(prefill_ms, 2), "kv_tokens_that_fit": kv_tokens}
    for batch in batches:
        prompt = torch.randint(0, vocab, (batch, 128), device="cuda")
        out = model(prompt, use_cache=True)
        cache = out.past_key_values
        step = out.logits[:, -1:].argmax(-1)
        model(step, past_key_values=cache, use_cache=True)  # warm the decode shapes
        times = []
        for _ in range(steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = model(step, past_key_values=cache, use_cache=True)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
            step = out.logits[:, -1:].argmax(-1)
        row[f"decode_ms_batch{batch}"] = round(statistics.median(times), 3)
        del cache, out
        torch.cuda.empty_cache()
    print(row, flush=True)
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mixtral-8x7b", choices=sorted(CONFIGS))
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--prefill", type=int, default=4096)
    p.add_argument("--decode-batches", default="1,64")
    p.add_argument("--decode-steps", type=int, default=16)
    p.add_argument("--csv")
    a = p.parse_args()
    print("command:", " ".join(sys.argv))
    print("device", torch.cuda.get_device_name(), "torch", torch.__version__, "transformers", transformers.__version__,
          "samoyeds", samoyeds.__version__, flush=True)
    config = CONFIGS[a.model](a.layers)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    batches = [int(b) for b in a.decode_batches.split(",")]
    rows = [measure(model, config, a.prefill, batches, a.decode_steps, f"{a.model} dense bf16")]
    samoyeds.hf.sparsify(model)  # frees the dense expert weights
    torch.cuda.empty_cache()
    rows.append(measure(model, config, a.prefill, batches, a.decode_steps, f"{a.model} samoyeds 1:2x2:4"))
    samoyeds.hf.check_errors(model)
    dense, sparse = rows
    print(f"prefill x{dense['prefill_ms'] / sparse['prefill_ms']:.2f}; "
          + "; ".join(f"decode batch {b} x{dense[f'decode_ms_batch{b}'] / sparse[f'decode_ms_batch{b}']:.2f}"
                      for b in batches)
          + f"; KV tokens that fit x{sparse['kv_tokens_that_fit'] / max(dense['kv_tokens_that_fit'], 1):.2f}")
    if a.csv:
        write_csv(a.csv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
