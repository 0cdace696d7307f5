#!/usr/bin/env python3
"""NF4 oracle: bitsandbytes 4-bit NormalFloat as HF transformers saves it, written in torch from the published format
description (shared/docs/quant-kernels.md §1; bitsandbytes itself is not installed and not used).

  nf4_oracle.py TINY_MODEL_DIR STEP1_FIXTURE_DIR OUT_DIR

writes OUT_DIR/
  model/            the tiny Step1 model with every transformer linear (q,k,v,o,gate,up,down) quantized to NF4,
                    blocksize 64, double quant (nested blocks of 256), exactly the released on-disk layout;
                    embeddings, norms and lm_head stay bf16
  expected.json     prompt (the step1-tiny prompt), greedy tokens and margins of the dequantized model
  logits.f32        [prompt, vocab] logits of the dequantized model (float64 accumulation, bf16 storage)
  ragged.safetensors  standalone quantized tensors of awkward sizes (odd N*K, ragged last block, more than one
                    nested group, blocksize 64 and 128, with and without double quant) plus, for each, the
                    dequantized fp32 values before the cast ("<name>.expected_f32")

Dequantization (the formula our loader must reproduce bit for bit in fp32, before the cast to bf16):
  absmax_f32[b] = nested_quant_map[absmax_u8[b]] * nested_absmax[b // 256] + nested_offset   (double quant)
  w[i]          = quant_map[nibble(i)] * absmax_f32[i // blocksize]
with element 2j in the HIGH nibble of byte j of the row-major flattened [out, in] weight.

Quantization rule used here (RTN): absmax = max |x| per block; code = nearest table entry to x / absmax (fp32
division), lowest index on a tie. Double quant: offset = mean(absmax); (absmax - offset) quantized blockwise (256)
the same way against the signed dynamic map, with nested_absmax = max |.| per 256 absmax values.
"""
import json, os, struct, sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BF = torch.bfloat16

# The NF4 code table (quant-kernels.md §1.5), index 0..15.
NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=torch.float32)


def dynamic_map():
    """The signed 8-bit 'dynamic tree' map of 8-bit optimizers (Dettmers et al. 2021): for each decimal exponent
    e = 0..6, 2^e values at the midpoints of 2^e + 1 equal steps over [0.1, 1], scaled by 10^(e-6), with both
    signs; plus 0 and 1. 2*(1+2+...+64) + 2 = 256 values, sorted ascending."""
    vals = []
    for e in range(7):
        steps = torch.linspace(0.1, 1.0, 2 ** e + 1)
        mids = (steps[:-1] + steps[1:]) / 2
        scale = 10.0 ** (e - 6)
        vals += (scale * mids).tolist() + (-scale * mids).tolist()
    vals += [0.0, 1.0]
    assert len(vals) == 256
    return torch.tensor(sorted(vals), dtype=torch.float32)


DYN = dynamic_map()


def nearest(values, table):
    """Index of the nearest table entry (lowest index on ties)."""
    return torch.argmin((values.view(-1, 1) - table.view(1, -1)).abs(), dim=1)


def blockwise(flat, blocksize, table):
    """Per-block absmax (fp32) and codes of flat fp32 values; the last block may be ragged."""
    n = flat.numel()
    nb = (n + blocksize - 1) // blocksize
    padded = torch.zeros(nb * blocksize, dtype=torch.float32)
    padded[:n] = flat
    blocks = padded.view(nb, blocksize)
    absmax = blocks.abs().max(dim=1).values
    safe = torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    normed = (blocks / safe.view(nb, 1)).view(-1)[:n]
    return absmax, nearest(normed, table)


def quantize_nf4(w, blocksize=64, double_quant=True):
    """Returns the tensors saved for one Linear4bit weight (names relative to 'P.weight') and the JSON dict."""
    shape = list(w.shape)
    flat = w.float().reshape(-1)
    absmax, q = blockwise(flat, blocksize, NF4)
    if q.numel() % 2:
        q = torch.cat([q, torch.zeros(1, dtype=q.dtype)])  # odd N*K: zero-padded to an even count
    packed = ((q[0::2] << 4) | q[1::2]).to(torch.uint8).view(-1, 1)  # element 2i -> high nibble
    out = {"": packed}
    meta = {"quant_type": "nf4", "blocksize": blocksize, "dtype": str(w.dtype).replace("torch.", ""), "shape": shape}
    if double_quant:
        offset = absmax.mean()
        nested_absmax, codes = blockwise(absmax - offset, 256, DYN)
        out[".absmax"] = codes.to(torch.uint8)
        out[".quant_map"] = NF4.clone()
        out[".nested_absmax"] = nested_absmax
        out[".nested_quant_map"] = DYN.clone()
        meta.update({"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": float(offset)})
    else:
        out[".absmax"] = absmax
        out[".quant_map"] = NF4.clone()
    blob = json.dumps(meta).encode("utf-8")
    out[".quant_state.bitsandbytes__nf4"] = torch.tensor(list(blob), dtype=torch.uint8)
    return out, meta


def dequantize_f32(t, meta):
    """The published formula, in fp32, before the cast. t: the tensors of quantize_nf4 (relative names)."""
    packed = t[""].view(-1)
    n = meta["shape"][0] * meta["shape"][1]
    q = torch.stack([packed >> 4, packed & 15], dim=1).view(-1)[:n].long()
    if "nested_offset" in meta:
        idx = torch.arange(t[".absmax"].numel()) // meta["nested_blocksize"]
        absmax = t[".nested_quant_map"][t[".absmax"].long()] * t[".nested_absmax"][idx]
        absmax = absmax + torch.tensor(meta["nested_offset"], dtype=torch.float32)
    else:
        absmax = t[".absmax"]
    return t[".quant_map"][q] * absmax[torch.arange(n) // meta["blocksize"]]


from step1_oracle import write_reference_outputs, write_safetensors  # noqa: E402  one writer for every oracle
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def main(tiny_dir, step1_fixture, out):
    from safetensors.torch import load_file

    cfg = json.load(open(os.path.join(tiny_dir, "config.json")))
    W = {}
    for f in sorted(os.listdir(tiny_dir)):
        if f.endswith(".safetensors"):
            W.update(load_file(os.path.join(tiny_dir, f)))
    saved, Wq = {}, {}
    for name, w in W.items():
        module = name[:-len(".weight")]
        if any(module.endswith(l) for l in LINEARS):
            t, meta = quantize_nf4(w)
            for suffix, v in t.items():
                saved[name + suffix] = v
            Wq[name] = dequantize_f32(t, meta).view(w.shape).to(BF)  # fp32 formula, then the cast
        else:
            saved[name] = w
            Wq[name] = w
    model_dir = os.path.join(out, "model")
    os.makedirs(model_dir, exist_ok=True)
    qcfg = dict(cfg)
    qcfg["quantization_config"] = {
        "quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False,
        "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "bfloat16",
        "bnb_4bit_quant_storage": "uint8", "llm_int8_skip_modules": None, "llm_int8_threshold": 6.0,
        "llm_int8_has_fp16_weight": False, "llm_int8_enable_fp32_cpu_offload": False,
        "_load_in_4bit": True, "_load_in_8bit": False}
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(qcfg, f, indent=2)
    write_safetensors(os.path.join(model_dir, "model.safetensors"), saved)

    prompt = json.load(open(os.path.join(step1_fixture, "expected.json")))["prompt"]
    logits, greedy, margins = write_reference_outputs(cfg, Wq, prompt, out,
                            "tests/oracle/nf4_oracle.py: tiny-step1 quantized to NF4 (blocksize 64, double quant), "
                            "dequantized by the published formula, float64-accumulated forward")

    # Awkward standalone tensors for the bit-exact dequant test.
    gen = torch.Generator().manual_seed(4242)
    ragged = {}
    cases = [("odd_5x37_dq", (5, 37), 64, True), ("odd_5x37_fp32", (5, 37), 64, False),
             ("ragged_3x100_dq", (3, 100), 64, True), ("groups_130x131_dq", (130, 131), 64, True),
             ("groups_130x131_b128_dq", (130, 131), 128, True), ("rows_96x256_fp32", (96, 256), 64, False)]
    for name, shape, bs, dq in cases:
        w = (torch.randn(*shape, generator=gen) * torch.rand(shape[0], 1, generator=gen) * 3).to(BF)
        w.view(-1)[::97] = 0  # exact zeros inside blocks
        t, meta = quantize_nf4(w, bs, dq)
        for suffix, v in t.items():
            ragged[name + ".weight" + suffix] = v
        ragged[name + ".expected_f32"] = dequantize_f32(t, meta)
    write_safetensors(os.path.join(out, "ragged.safetensors"), ragged)

    sizes = {f: os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs}
    print(f"nf4 oracle: logits {list(logits.shape)}; greedy {greedy}; min margin {min(margins):.4f}; files {sizes}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
