#!/usr/bin/env python3
"""torch_step.py — the step `krongrad bench train` times, in PyTorch + PEFT, for comparison.

--arch distilbert-base (default): DistilBERT-base (random weights, the real config) with a
multiple-choice head; B questions x
K choices x T tokens of random ids; dropout on (model.train()); cross entropy against a gold
choice; backward; the gradients' global norm clipped to 1; AdamW (lr 2e-4). Adapters on every
linear layer of the blocks (q_lin, k_lin, v_lin, out_lin, lin1, lin2), the head
(pre_classifier, classifier) trained whole, as `krongrad bench` does:
  lora      PEFT LoraConfig(r=R, lora_alpha=2R)
  kronlora  Kron-LoRA, dW = A (dA2 x dA1) kron B1 (dB2 x R) B2 (R x dB1), computed without
            forming dW (three small contractions; PEFT has no such adapter)
  lokr      PEFT LoKrConfig(r=R, alpha=2R)
  full      every parameter trained
--arch smollm2-135m: SmolLM2-135M's config (LlamaForCausalLM: 30 blocks, 9 heads over 3 key/value
heads, vocabulary 49,152, tied head), random weights, B·K rows of T random ids, the mean
next-token NLL of every position (labels = ids, as krongrad bench's decoder loss); adapters on
q/k/v/o_proj and gate/up/down_proj (PEFT's all-linear: the LM head stays frozen), nothing else
trained; attention as transformers picks it (SDPA).
--precision bf16 runs the forward under torch.autocast("cpu", torch.bfloat16).
Prints the same figures as krongrad bench (median step, tokens/s, peak RSS) and, with --json,
one JSON line. Not part of the tests; bench/side_by_side.sh runs it beside krongrad.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="distilbert-base", choices=["distilbert-base", "smollm2-135m"])
    p.add_argument("--adapter", default="lora", choices=["lora", "kronlora", "lokr", "full"])
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--kron-a", default="2x4", help="Kron-LoRA's A shape dA2xdA1")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--choices", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    p.add_argument("--json", action="store_true")
    return p.parse_args()


def main():
    a = parse()
    # Thread counts are read when the libraries load (OpenBLAS, OpenMP): set them first.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(a.threads))
    import torch
    from torch import nn
    import transformers

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    decoder = a.arch == "smollm2-135m"
    if decoder:
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        heads = []
        vocab = 49152
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=vocab, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
            num_attention_heads=9, num_key_value_heads=3, head_dim=64,
            max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
            tie_word_embeddings=True))
    else:
        targets = ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"]
        heads = ["pre_classifier", "classifier"]
        vocab = 30522
        # distilbert-base-uncased's shapes
        model = transformers.DistilBertForMultipleChoice(transformers.DistilBertConfig())

    class KronLoRA(nn.Module):
        """base(x) + s * x (A kron B1 B2)^T, never forming the (out, in) matrix."""

        def __init__(self, base, r, a2, a1):
            super().__init__()
            self.base, self.a2, self.a1 = base, a2, a1
            out_f, in_f = base.weight.shape
            self.b2_in, self.b2_out = in_f // a1, out_f // a2
            self.A = nn.Parameter(torch.empty(a2, a1))
            self.B2 = nn.Parameter(torch.empty(r, self.b2_in))
            self.B1 = nn.Parameter(torch.zeros(self.b2_out, r))
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            nn.init.kaiming_uniform_(self.B2, a=math.sqrt(5))
            self.scale = 2.0  # alpha / r with alpha = 2r

        def forward(self, x):
            lead = x.shape[:-1]
            X = x.reshape(-1, self.a1, self.b2_in)              # (N, dA1, dB1)
            t1 = X @ self.B2.t()                                 # (N, dA1, R)
            t2 = torch.einsum("ij,njr->nir", self.A, t1)         # (N, dA2, R)
            y = (t2 @ self.B1.t()).reshape(*lead, -1)            # (N, dA2·dB2)
            return self.base(x) + self.scale * y

    if a.adapter == "full":
        pass
    elif a.adapter == "kronlora":
        a2, a1 = (int(v) for v in a.kron_a.lower().split("x"))
        for p in model.parameters():
            p.requires_grad_(False)
        for name, mod in list(model.named_modules()):
            for child_name, child in list(mod.named_children()):
                if child_name in targets and isinstance(child, nn.Linear):
                    setattr(mod, child_name, KronLoRA(child, a.rank, a2, a1))
        for head in heads:
            for p in getattr(model, head).parameters():
                p.requires_grad_(True)
    else:
        import peft
        cfg_cls = peft.LoraConfig if a.adapter == "lora" else peft.LoKrConfig
        kw = dict(r=a.rank, target_modules=targets,
                  modules_to_save=heads or None)
        kw["lora_alpha" if a.adapter == "lora" else "alpha"] = 2 * a.rank
        model = peft.get_peft_model(model, cfg_cls(**kw))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (a.batch, a.choices, a.seq), generator=g)
    if decoder:
        ids = ids.reshape(a.batch * a.choices, a.seq)
    gold = torch.arange(a.batch) % a.choices
    tokens = a.batch * a.choices * a.seq

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            if decoder:  # the mean NLL of each position's next token (HF shifts the labels)
                loss = model(input_ids=ids, labels=ids).loss.float()
            else:
                logits = model(input_ids=ids).logits
                loss = nn.functional.cross_entropy(logits.float(), gold)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    secs = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        secs.append(time.perf_counter() - t0)
    med = statistics.median(secs)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    n_train = sum(p.numel() for p in params)
    print(f"torch {torch.__version__} bench train: {a.arch}, {a.adapter} r{a.rank}, "
          f"{a.precision}, {torch.get_num_threads()} threads")
    print(f"  trainable params   {n_train:,}")
    print(f"  median step        {med:.3f} s (min {min(secs):.3f}, max {max(secs):.3f} over "
          f"{a.steps} steps)")
    print(f"  tokens/s           {tokens / med:.0f}")
    print(f"  peak memory        {rss:.1f} MiB host RSS")
    print(f"  last loss          {loss:.4f}")
    if a.json:
        print(json.dumps({"arch": a.arch, "adapter": a.adapter, "precision": a.precision, "tokens": tokens,
                          "step_s": med, "tokens_per_s": tokens / med, "rss_mib": rss,
                          "trainable": n_train}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
