#!/usr/bin/env python3
"""W4A16 oracle: quantizes the tiny Step1 model (models/tiny-step1) into the two int4 formats users have, written
from their published descriptions (shared/docs/quant-kernels.md §2), not with our C# writer and not with
compressed-tensors / AutoAWQ code (neither is installed):

  w4a16_oracle.py ct  REPO OUT   compressed-tensors "pack-quantized": self_attn linears W4A16 (symmetric, group 128),
                                 mlp linears W4A16_ASYM (asymmetric, packed zero points), lm_head ignored
  w4a16_oracle.py awq REPO OUT   AutoAWQ GEMM (version "gemm", zero_point true, group 128), one layer, with AWQ-style
                                 per-channel rescaling folded into the RMSNorm weights

Each OUT folder is a loadable checkpoint (config.json + model.safetensors) plus expected.json / logits.f32: the
float64 forward of step1_oracle.py over the EXACT dequantized weights w = (q - z) * s (no rounding of w).
"""
import json, os, struct, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step1_oracle as so  # noqa: E402  (forward, repetition_ban: the model's reference math)

BF = torch.bfloat16
G = 128
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # nibble i of a word holds column 8j + AWQ_ORDER[i]
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        assert e["dtype"] == "BF16", e
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=BF).reshape(e["shape"]).clone()
    return out


write_safetensors = so.write_safetensors  # one writer for every oracle
def to_i32(u):
    """uint32 values held in int64 -> int32 with the same bits."""
    u = u & 0xFFFFFFFF
    return torch.where(u >= 2 ** 31, u - 2 ** 32, u).to(torch.int32)


def pack8(vals, dim):
    """pack_to_int32 (§2.3): 8 unsigned 4-bit values along `dim`, element 8j+i at bits 4i (LSB first)."""
    v = vals.to(torch.int64).movedim(dim, -1)
    assert v.shape[-1] % 8 == 0
    v = v.reshape(*v.shape[:-1], -1, 8)
    packed = sum(v[..., i] << (4 * i) for i in range(8))
    return to_i32(packed).movedim(-1, dim).contiguous()


def ct_quantize(w, symmetric):
    """compressed-tensors group quantization (§2.4): returns (packed, scale_bf16, zp_packed or None, w_exact f64)."""
    N, K = w.shape
    wg = w.float().reshape(N, K // G, G)
    if symmetric:
        amax = wg.abs().amax(-1)
        scale = (amax / 7.5).clamp(min=torch.finfo(torch.float32).eps).to(BF)
        zp = torch.zeros_like(amax, dtype=torch.int64)
    else:
        mn = wg.amin(-1).clamp(max=0)
        mx = wg.amax(-1).clamp(min=0)
        scale = ((mx - mn) / 15).clamp(min=torch.finfo(torch.float32).eps).to(BF)
        zp = torch.round(-8 - mn / scale.float()).clamp(-8, 7).to(torch.int64)
    q = torch.round(wg / scale.float().unsqueeze(-1) + zp.unsqueeze(-1)).clamp(-8, 7).to(torch.int64)
    codes = (q + 8).reshape(N, K)
    w_exact = ((q - zp.unsqueeze(-1)).double() * scale.double().unsqueeze(-1)).reshape(N, K)
    zp_packed = None if symmetric else pack8(zp + 8, dim=0)  # [N/8, K/G], packed along N (>= 0.10)
    return pack8(codes, dim=1), scale, zp_packed, w_exact


def awq_quantize(w):
    """AutoAWQ pseudo_quantize_tensor with zero_point (§2.6), GEMM packing. Returns qweight, qzeros, scales, w_exact."""
    N, K = w.shape
    wg = w.float().reshape(N, K // G, G)
    mn, mx = wg.amin(-1), wg.amax(-1)
    scales = ((mx - mn).clamp(min=1e-5) / 15).to(torch.float16)
    s = scales.float()
    zeros = torch.clamp(-torch.round(mn / s), 0, 15).to(torch.int64)
    q = torch.clamp(torch.round(wg / s.unsqueeze(-1)) + zeros.unsqueeze(-1), 0, 15).to(torch.int64)
    w_exact = ((q - zeros.unsqueeze(-1)).double() * scales.double().unsqueeze(-1)).reshape(N, K)

    def pack_awq(v):  # v [rows, N] -> [rows, N/8], nibble i holds column 8j + AWQ_ORDER[i]
        v = v.reshape(v.shape[0], -1, 8)
        return to_i32(sum(v[..., AWQ_ORDER[i]] << (4 * i) for i in range(8)))

    qweight = pack_awq(q.reshape(N, K).T.contiguous())          # [K, N/8]
    qzeros = pack_awq(zeros.T.contiguous())                       # [K/G, N/8]
    return qweight, qzeros, scales.T.contiguous(), w_exact       # scales [K/G, N] F16


def reference_outputs(cfg, W, prompt, out):
    return so.write_reference_outputs(
        cfg, W, prompt, out, "tests/oracle/w4a16_oracle.py: float64 forward over the exactly dequantized weights")


def load_tiny(repo):
    folder = os.path.join(repo, "models", "tiny-step1")
    cfg = json.load(open(os.path.join(folder, "config.json")))
    W = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            W.update(load_safetensors(os.path.join(folder, f)))
    prompt = json.load(open(os.path.join(repo, "tests", "fixtures", "step1-tiny", "expected.json")))["prompt"]
    return cfg, W, prompt


def ct(repo, out):
    cfg, W, prompt = load_tiny(repo)
    os.makedirs(out, exist_ok=True)
    tensors, Wq = {}, dict(W)
    for l in range(cfg["num_hidden_layers"]):
        for m in LINEARS:
            p = f"model.layers.{l}.{m}"
            w = W.pop(p + ".weight")
            Wq.pop(p + ".weight")
            packed, scale, zp, w_exact = ct_quantize(w, symmetric=m.startswith("self_attn"))
            tensors[p + ".weight_packed"] = packed
            tensors[p + ".weight_scale"] = scale
            tensors[p + ".weight_shape"] = torch.tensor(list(w.shape), dtype=torch.int64)
            if zp is not None:
                tensors[p + ".weight_zero_point"] = zp
            Wq[p + ".weight"] = w_exact
    tensors.update(W)  # embeddings, norms, lm_head: bf16 as they are
    wcfg = {"num_bits": 4, "type": "int", "strategy": "group", "group_size": G, "dynamic": False,
            "observer": "minmax", "actorder": None, "block_structure": None}
    cfg_q = dict(cfg)
    cfg_q["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
        "ignore": ["lm_head"], "kv_cache_scheme": None,
        "config_groups": {
            "group_0": {"targets": ["re:.*self_attn.*"], "input_activations": None, "output_activations": None,
                        "weights": dict(wcfg, symmetric=True)},
            "group_1": {"targets": ["re:.*mlp.*"], "input_activations": None, "output_activations": None,
                        "weights": dict(wcfg, symmetric=False)},
        }}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg_q, f, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    logits, greedy, margins = reference_outputs(cfg, Wq, prompt, out)
    base = so.forward(cfg, {k: v for k, v in load_tiny(repo)[1].items()}, prompt)
    rel = float((logits.double() - base.double()).norm() / base.double().norm())
    print(f"ct: greedy {greedy}; min margin {min(margins):.4f}; quantized-vs-bf16 logits rel err {rel:.4f}")


def awq(repo, out):
    cfg, W, prompt = load_tiny(repo)
    cfg = dict(cfg, num_hidden_layers=1)
    W = {k: v for k, v in W.items() if not k.startswith("model.layers.1.")}
    gen = torch.Generator().manual_seed(4242)
    H = cfg["hidden_size"]
    # AWQ folds a per-input-channel scale s into the preceding RMSNorm (norm / s, linear columns * s).
    for norm, mods in [("input_layernorm", ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]),
                       ("post_attention_layernorm", ["mlp.gate_proj", "mlp.up_proj"])]:
        s = torch.exp(torch.randn(H, generator=gen) * 0.3)
        W[f"model.layers.0.{norm}.weight"] = (W[f"model.layers.0.{norm}.weight"].double() / s).to(BF)
        for m in mods:
            W[f"model.layers.0.{m}.weight"] = (W[f"model.layers.0.{m}.weight"].double() * s).to(BF)
    os.makedirs(out, exist_ok=True)
    tensors, Wq = {}, dict(W)
    for m in LINEARS:
        p = f"model.layers.0.{m}"
        w = W.pop(p + ".weight")
        qweight, qzeros, scales, w_exact = awq_quantize(w)
        tensors[p + ".qweight"] = qweight
        tensors[p + ".qzeros"] = qzeros
        tensors[p + ".scales"] = scales
        Wq[p + ".weight"] = w_exact
    tensors.update(W)
    cfg_q = dict(cfg)
    cfg_q["quantization_config"] = {"quant_method": "awq", "zero_point": True, "group_size": G, "bits": 4,
                                    "version": "gemm", "modules_to_not_convert": None}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg_q, f, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    _, greedy, margins = reference_outputs(cfg, Wq, prompt, out)
    print(f"awq: greedy {greedy}; min margin {min(margins):.4f}")


if __name__ == "__main__":
    mode, repo, out = sys.argv[1], sys.argv[2], sys.argv[3]
    {"ct": ct, "awq": awq}[mode](repo, out)
