#!/usr/bin/env python3
"""Step1 oracle: an independent PyTorch implementation of the Step-Audio-EditX LLM written from
shared/docs/stepaudio-spec.md §1 (not from any released code).

  step1_oracle.py tiny  OUT_DIR    writes a tiny random checkpoint in the release layout (sharded, with
                                   model.safetensors.index.json) plus reference outputs:
                                   expected.json (prompt, greedy tokens, margins) and logits.f32
  step1_oracle.py full  OUT_DIR    writes a full-size (3.5B) random bf16 checkpoint for benchmarks
  step1_oracle.py bench CKPT_DIR   times the eager PyTorch reference decoding loop (HF-style: bf16 tensors, KV cache
                                   grown by concatenation, SDPA with the sqrt-ALiBi bias as an additive mask)

Numerics of the reference path (what the native backend must reproduce): bf16 storage of every activation,
linear = bf16(x·Wᵀ) with wide accumulation, RMSNorm = bf16(bf16(x·rsqrt(mean(x²)+eps))·w), SwiGLU =
bf16(bf16(silu(g))·u), residual adds rounded to bf16, attention scores/softmax in high precision with the
fp32 sqrt-ALiBi bias, output rounded to bf16. Here the accumulations are float64: an upper-precision oracle.
"""
import json, math, os, struct, sys, time

import torch

BF = torch.bfloat16


def alibi_slopes(n_heads):
    n = 2 ** int(math.floor(math.log2(n_heads)))
    slopes = [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]
    slopes += [2.0 ** (-4.0 * (2 * j + 1) / n) for j in range(n_heads - n)]
    return torch.tensor(slopes, dtype=torch.float64)


def rmsnorm(x, w, eps):
    var = x.double().pow(2).mean(-1, keepdim=True)
    xn = (x.double() * torch.rsqrt(var + eps)).to(BF)
    return (xn.double() * w.double()).to(BF)


def linear(x, w):
    return (x.double() @ w.double().T).to(BF)


def attention(q, k, v, slopes, n_kv):
    """q [T,H,D], k/v [T,G,D] for the whole sequence (no cache: the oracle recomputes everything)."""
    T, H, D = q.shape
    rep = H // n_kv
    k = k.repeat_interleave(rep, dim=1)  # contiguous grouping: head h uses group h // rep
    v = v.repeat_interleave(rep, dim=1)
    scores = torch.einsum("ihd,jhd->hij", q.double(), k.double()) / math.sqrt(D)
    i = torch.arange(T).view(T, 1)
    j = torch.arange(T).view(1, T)
    dist = (i - j).clamp(min=0).double()
    bias = -slopes.view(H, 1, 1) * dist.sqrt().view(1, T, T)
    scores = scores + bias
    scores = scores.masked_fill((j > i).view(1, T, T), float("-inf"))
    p = torch.softmax(scores, dim=-1)
    out = torch.einsum("hij,jhd->ihd", p, v.double())
    return out.to(BF).reshape(T, H * D)


def forward(cfg, W, ids):
    H, nh, g = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_attention_groups"]
    D = H // nh
    eps = cfg["rms_norm_eps"]
    slopes = alibi_slopes(nh)
    x = W["model.embed_tokens.weight"][ids]
    T = len(ids)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        n = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(n, W[p + "self_attn.q_proj.weight"]).view(T, nh, D)
        k = linear(n, W[p + "self_attn.k_proj.weight"]).view(T, g, D)
        v = linear(n, W[p + "self_attn.v_proj.weight"]).view(T, g, D)
        a = attention(q, k, v, slopes, g)
        x = (x.double() + linear(a, W[p + "self_attn.o_proj.weight"]).double()).to(BF)
        n = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        gate = linear(n, W[p + "mlp.gate_proj.weight"])
        up = linear(n, W[p + "mlp.up_proj.weight"])
        act = (torch.nn.functional.silu(gate.double()).to(BF).double() * up.double()).to(BF)
        x = (x.double() + linear(act, W[p + "mlp.down_proj.weight"]).double()).to(BF)
    x = rmsnorm(x, W["model.norm.weight"], eps)
    return linear(x, W["lm_head.weight"])  # bf16 logits [T, vocab]


def repetition_ban(logits, seq, window=10):
    """RepetitionAwareLogitsProcessor (spec §3.5)."""
    if len(seq) < window:
        return logits
    last = seq[-1]
    count = sum(1 for t in seq[-window:] if t == last)
    if count / window > 0.1:
        logits = logits.clone()
        logits[last] = float("-inf")
    return logits


def make_weights(cfg, gen, device="cpu"):
    H, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_attention_groups"] * (H // cfg["num_attention_heads"])

    def rnd(*shape, std):
        return (torch.randn(*shape, generator=gen, device=device) * std).to(BF)

    W = {"model.embed_tokens.weight": rnd(V, H, std=1.0)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = (1 + rnd(H, std=0.1).float()).to(BF)
        W[p + "self_attn.q_proj.weight"] = rnd(H, H, std=2.0 / math.sqrt(H))
        W[p + "self_attn.k_proj.weight"] = rnd(kv, H, std=2.0 / math.sqrt(H))
        W[p + "self_attn.v_proj.weight"] = rnd(kv, H, std=1.0 / math.sqrt(H))
        W[p + "self_attn.o_proj.weight"] = rnd(H, H, std=0.5 / math.sqrt(H))
        W[p + "post_attention_layernorm.weight"] = (1 + rnd(H, std=0.1).float()).to(BF)
        W[p + "mlp.gate_proj.weight"] = rnd(F, H, std=1.0 / math.sqrt(H))
        W[p + "mlp.up_proj.weight"] = rnd(F, H, std=1.0 / math.sqrt(H))
        W[p + "mlp.down_proj.weight"] = rnd(H, F, std=0.5 / math.sqrt(F))
    W["model.norm.weight"] = (1 + rnd(H, std=0.1).float()).to(BF)
    W["lm_head.weight"] = rnd(V, H, std=3.0 / math.sqrt(H))  # logits std ~3: clear greedy margins
    return W


def write_safetensors(path, tensors):
    """The safetensors format written by hand from its description (u64 header length, JSON header, raw bytes).
    Shared by every oracle script in this folder."""
    dtypes = {BF: "BF16", torch.float16: "F16", torch.float32: "F32", torch.int32: "I32", torch.int64: "I64",
              torch.int8: "I8", torch.uint8: "U8"}
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        t = t.contiguous().cpu()
        data = t.view(torch.uint8).numpy().tobytes() if t.dtype in (BF, torch.float16) else t.numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_checkpoint(out, cfg, W, shards=2):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    names = list(W.keys())
    per = math.ceil(len(names) / shards)
    weight_map = {}
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: W[n] for n in names[s * per:(s + 1) * per]}
        write_safetensors(os.path.join(out, fname), part)
        weight_map.update({n: fname for n in part})
    total = sum(t.numel() * t.element_size() for t in W.values())
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def config(hidden, heads, groups, layers, ffn, vocab):
    # Key set as in the released config.json (spec §1.1); tie_word_embeddings absent on purpose (= untied).
    return {
        "architectures": ["Step1ForCausalLM"], "model_type": "step1",
        "hidden_size": hidden, "intermediate_size": ffn, "num_attention_heads": heads,
        "num_attention_groups": groups, "num_hidden_layers": layers, "vocab_size": vocab,
        "rms_norm_eps": 1e-5, "max_seq_len": 32768, "bos_token_id": 1, "pad_token_id": 0, "eos_token_id": 3,
        "torch_dtype": "bfloat16",
    }


def tiny(out):
    cfg = config(hidden=384, heads=12, groups=4, layers=2, ffn=512, vocab=512)
    gen = torch.Generator().manual_seed(20261124)
    W = make_weights(cfg, gen)
    write_checkpoint(out, cfg, W)
    prompt = [1, 4] + torch.randint(5, cfg["vocab_size"], (38,), generator=gen).tolist()
    write_reference_outputs(cfg, W, prompt, out,
                            "reference outputs of tests/oracle/step1_oracle.py (float64 accumulation, bf16 storage)")


def write_reference_outputs(cfg, W, prompt, out, note, steps=24):
    """The fixture every tiny-model oracle writes (this one and the NF4 / W4A16 ones): the prompt's logits
    (logits.f32, [len(prompt), vocab]) and `steps` greedy tokens with the repetition ban and each step's top-2 margin
    (expected.json). Returns (logits, greedy, margins)."""
    logits = forward(cfg, W, prompt)
    seq, greedy, margins = list(prompt), [], []
    for _ in range(steps):
        last = repetition_ban(forward(cfg, W, seq)[-1].float(), seq)
        top2 = torch.topk(last, 2).values
        margins.append(float(top2[0] - top2[1]))
        tok = int(torch.argmax(last))
        greedy.append(tok)
        seq.append(tok)
    with open(os.path.join(out, "logits.f32"), "wb") as f:
        f.write(logits.float().numpy().astype("<f4").tobytes())
    expected = {"prompt": prompt, "greedy_tokens": greedy, "greedy_margins": margins,
                "logits_shape": list(logits.shape), "logits_file": "logits.f32", "note": note}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    return logits, greedy, margins
    print(f"tiny: logits {list(logits.shape)} |logits| rms {logits.float().pow(2).mean().sqrt():.3f}; "
          f"greedy {greedy}; min margin {min(margins):.4f}")


def full(out):
    cfg = config(hidden=3072, heads=48, groups=4, layers=32, ffn=8192, vocab=74752)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=dev).manual_seed(7)
    t0 = time.time()
    W = make_weights(cfg, gen, device=dev)
    write_checkpoint(out, cfg, W, shards=4)
    print(f"full: wrote {sum(t.numel() for t in W.values()) / 1e9:.3f} B params to {out} in {time.time() - t0:.1f} s")


def bench(ckpt, new_tokens=50):
    """The same-run PyTorch reference: HF-style eager decoding (bf16 on GPU, cat-grown KV cache, SDPA + bias)."""
    from safetensors.torch import load_file
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    W = {}
    for f in sorted(os.listdir(ckpt)):
        if f.endswith(".safetensors"):
            W.update(load_file(os.path.join(ckpt, f), device="cuda"))
    H, nh, g, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_attention_groups"], cfg["num_hidden_layers"]
    D, eps = H // nh, cfg["rms_norm_eps"]
    slopes = alibi_slopes(nh).float().cuda()
    F = torch.nn.functional

    def norm(x, w):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x * torch.rsqrt(var + eps).to(x.dtype)) * w

    def step(ids, cache, pos0):
        x = W["model.embed_tokens.weight"][ids]
        T = x.shape[0]
        for l in range(L):
            p = f"model.layers.{l}."
            n = norm(x, W[p + "input_layernorm.weight"])
            q = F.linear(n, W[p + "self_attn.q_proj.weight"]).view(T, nh, D).transpose(0, 1)
            k = F.linear(n, W[p + "self_attn.k_proj.weight"]).view(T, g, D).transpose(0, 1)
            v = F.linear(n, W[p + "self_attn.v_proj.weight"]).view(T, g, D).transpose(0, 1)
            if cache[l] is not None:
                k = torch.cat([cache[l][0], k], dim=1)
                v = torch.cat([cache[l][1], v], dim=1)
            cache[l] = (k, v)
            S = k.shape[1]
            i = torch.arange(pos0, pos0 + T, device="cuda").view(T, 1)
            j = torch.arange(S, device="cuda").view(1, S)
            bias = (-slopes.view(nh, 1, 1) * (i - j).clamp(min=0).float().sqrt()).masked_fill(j > i, float("-inf")).to(BF)
            a = F.scaled_dot_product_attention(q, k.repeat_interleave(nh // g, 0), v.repeat_interleave(nh // g, 0), attn_mask=bias)
            x = x + F.linear(a.transpose(0, 1).reshape(T, H), W[p + "self_attn.o_proj.weight"])
            n = norm(x, W[p + "post_attention_layernorm.weight"])
            x = x + F.linear(F.silu(F.linear(n, W[p + "mlp.gate_proj.weight"])) * F.linear(n, W[p + "mlp.up_proj.weight"]),
                             W[p + "mlp.down_proj.weight"])
        return F.linear(norm(x[-1:], W["model.norm.weight"]), W["lm_head.weight"])

    prompt = torch.randint(5, 65536, (32,), device="cuda")
    results = {}
    for run in range(3):  # first run warms up
        torch.cuda.synchronize()
        t0 = time.time()
        cache = [None] * L
        logits = step(prompt, cache, 0)
        pos = prompt.numel()
        tok = torch.argmax(logits[-1])
        for _ in range(new_tokens - 1):
            logits = step(tok.view(1), cache, pos)
            pos += 1
            tok = torch.argmax(logits[-1])
        torch.cuda.synchronize()
        results[run] = time.time() - t0
    best = min(results[1], results[2])
    print(f"pytorch-eager-reference: {new_tokens} tokens from a 32-token prompt in {best * 1000:.1f} ms "
          f"({new_tokens / best:.1f} tok/s incl. prefill)")


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    {"tiny": tiny, "full": full, "bench": bench}[mode](path)
