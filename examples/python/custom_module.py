"""samoyeds inside your own module: a router of your own, the experts as a
samoyeds.nn.SparseMoE, checked against the same pruned weights run densely,
then compiled.

  python3 custom_module.py
"""
import torch

from samoyeds import Sparsity, prune
from samoyeds.nn import SparseMoE


class MyMoE(torch.nn.Module):
    def __init__(self, hidden=1024, ffn=2048, experts=16, top_k=2):
        super().__init__()
        self.router = torch.nn.Linear(hidden, experts, bias=False, dtype=torch.bfloat16, device="cuda")
        w1, w3 = (torch.randn(experts, ffn, hidden, device="cuda") * 0.02 for _ in range(2))
        w2 = torch.randn(experts, hidden, ffn, device="cuda") * 0.02
        # Prune here so that the dense reference below runs the very weights the layer packs.
        self.w1, self.w3, self.w2 = (prune(w, Sparsity()).to(torch.bfloat16) for w in (w1, w3, w2))
        self.experts = SparseMoE(self.w1, self.w3, self.w2, top_k=top_k, renormalize=True, strict=True)
        self.top_k = top_k

    def forward(self, x):
        logits = self.router(x).float()  # float logits route as the reference does
        return self.experts(x, logits)

    def dense(self, x):
        weights, ids = torch.softmax(self.router(x).float(), -1).topk(self.top_k, dim=-1)
        weights = weights / weights.sum(-1, keepdim=True)
        y = torch.zeros_like(x, dtype=torch.float32)
        for k in range(self.top_k):
            e = ids[:, k]
            h = torch.nn.functional.silu(torch.einsum("th,tfh->tf", x.float(), self.w1[e].float()))
            h = h * torch.einsum("th,tfh->tf", x.float(), self.w3[e].float())
            y += weights[:, k, None] * torch.einsum("tf,thf->th", h, self.w2[e].float())
        return y


def main():
    torch.manual_seed(0)
    moe = MyMoE()
    x = torch.randn(64, 1024, device="cuda").to(torch.bfloat16)
    with torch.no_grad():
        y, want = moe(x), moe.dense(x)
        err = float((y.float() - want).norm() / want.norm())
        compiled = torch.compile(moe, fullgraph=True)
        same = torch.equal(compiled(x), y)
    print(f"relative error against the dense pruned weights: {err:.2e}; compiled output identical: {same}")
    assert err < 1e-2 and same


if __name__ == "__main__":
    main()
