"""Sparsify a transformers MoE model with samoyeds and generate with it.

  python3 sparsify_and_generate.py [--model HF_DIR] [--packed PACKED_DIR] [--tokens 32]

Without --model a small Mixtral-shaped model with random weights is built
(the output is then noise, but every step runs). --packed loads the experts
from a packed checkpoint (samoyeds pack) instead of pruning in memory.
"""
import argparse
import time

import torch
import transformers

import samoyeds.hf


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    p.add_argument("--packed")
    p.add_argument("--tokens", type=int, default=32)
    a = p.parse_args()
    if a.model:
        model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).cuda().eval()
    else:
        config = transformers.MixtralConfig(hidden_size=512, intermediate_size=1024, num_hidden_layers=2,
                                            num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                                            num_local_experts=8, num_experts_per_tok=2, vocab_size=1000)
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).cuda().eval()
    prompt = torch.randint(0, model.config.vocab_size, (1, 16), device="cuda")
    # One call: every experts module pruned to 1:2 rows per 128 columns then 2:4, packed, and selected.
    samoyeds.hf.sparsify(model, packed=a.packed)
    with torch.no_grad():
        model.generate(prompt, max_new_tokens=4, do_sample=False)  # kernels load (or compile) here
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=a.tokens, do_sample=False, min_new_tokens=a.tokens)
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    samoyeds.hf.check_errors(model)
    print(f"generated {out.shape[1] - prompt.shape[1]} tokens in {seconds:.2f} s: {out[0, -8:].tolist()}")


if __name__ == "__main__":
    main()
