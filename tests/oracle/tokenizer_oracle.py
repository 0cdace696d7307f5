#!/usr/bin/env python3
"""Oracle for the Step1 text front end (issue 6): tokenizer ids, clone/edit prompt ids, audio-token mapping, speaker id.

Two sub-commands, so that the committed tiny model is exactly the one the references were computed on:

  train      --out DIR     trains a tiny SentencePiece Unigram model (byte fallback) laid out like the real Step1
                           tokenizer.model (ids 0..67 control/user-defined pieces with the real names and types, byte
                           pieces <0xNN> at 68+NN, normal pieces, then 9216 USER_DEFINED <audio_N> pieces appended at the
                           end, so <audio_N> = base + N), and writes tokenizer.model + tokenizer_config.json (the real
                           release's config). Needs only the `sentencepiece` package.
  reference  --model-dir DIR [--model-dir DIR2 ...] --out DIR
                           records, for each tokenizer folder, reference tokenizations of a varied corpus and the prompt
                           ids of clone and every edit type, as JSON. Needs sentencepiece + tokenizers (+ transformers).

The primary reference ("hf_fast") is the HF `tokenizers` pipeline exactly as transformers 4.53.3 (the release's pin)
builds it when AutoTokenizer loads a folder with tokenizer.model + tokenizer_config.json {LlamaTokenizer, legacy: false}
and no tokenizer.json: LlamaTokenizerFast converted by LlamaConverter -> Unigram(vocab, unk 0, byte_fallback) with the
first three pieces' scores set to 0, pre-tokenizer Metaspace("▁", prepend_scheme="first", split=False), no normalizer,
every CONTROL and USER_DEFINED piece added as an AddedToken(normalized=False) (special for CONTROL), plus the special
tokens <unk>/<s>/</s>. tts.py calls tokenizer.encode(s) and prepends [1] itself; ids are taken without special tokens
(spec §2.3; the BOS question is recorded below as `bos_check`).

Also recorded, for comparison only: the installed transformers' AutoTokenizer (its class and version), a transcription
of transformers 4.53.3's slow LlamaTokenizer(legacy=False).tokenize, and plain sentencepiece encode.

Findings of the committed run (GPU machine: sentencepiece 0.2.2, tokenizers 0.23.2, transformers 5.17.0; tiny model and
the release tokenizer.model, 74,752 pieces): hf_fast, plain sentencepiece and the slow-4.53 transcription give identical
ids for all 18 clone/edit prompts; they differ only on edge strings (leading spaces, text starting with an added token,
control tokens or literal "<0x41>" in text). transformers 5.17's AutoTokenizer/LlamaTokenizer (TokenizersBackend)
differs on every prompt (no dummy prefix, other segmentation): do not use transformers 5.x as the reference.

Usage: python3 tokenizer_oracle.py train --out tests/fixtures/text/tiny   (done once; the model is committed)
       python3 tokenizer_oracle.py reference --model-dir tiny [--model-dir real] --out $OUT   (expected_<dir>.json)

The prompt builders below are a transcription of tts.py (_encode_audio_edit_clone_prompt, _build_audio_edit_instruction,
_encode_audio_edit_prompt, generate_clone_voice_id) and tokenizer.py merge_vq0206_to_token_str / wav2token, and
cosyvoice.py _reshape, written from stepaudio-spec.md §2-§3, §4.4, §5.3.
"""
import argparse, hashlib, json, os, random, struct, sys

# ----------------------------------------------------------------------------------------------------------------------
# Minimal protobuf reader/writer for sentencepiece ModelProto (pieces = field 1; normalizer_spec = field 3).


def _varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1; r |= (c & 0x7F) << s; s += 7
        if c < 0x80:
            return r, i


def _fields(b):
    i = 0
    while i < len(b):
        k, i = _varint(b, i); f, w = k >> 3, k & 7
        if w == 0: v, i = _varint(b, i)
        elif w == 1: v = b[i:i + 8]; i += 8
        elif w == 5: v = b[i:i + 4]; i += 4
        elif w == 2:
            n, i = _varint(b, i); v = b[i:i + n]; i += n
        else: raise ValueError(f"wire type {w}")
        yield f, w, v


def _enc_varint(n):
    out = bytearray()
    while True:
        c = n & 0x7F; n >>= 7
        if n: out.append(c | 0x80)
        else: out.append(c); return bytes(out)


def _enc_field(f, w, v):
    key = _enc_varint((f << 3) | w)
    if w == 0: return key + _enc_varint(v)
    if w == 2: return key + _enc_varint(len(v)) + v
    return key + v


NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def read_model(path):
    """-> (pieces [(piece, score, type)], other top-level fields [(f, w, v)])"""
    b = open(path, "rb").read()
    pieces, other = [], []
    for f, w, v in _fields(b):
        if f == 1:
            p, sc, ty = None, 0.0, NORMAL
            for g, ww, vv in _fields(v):
                if g == 1: p = vv.decode("utf-8")
                elif g == 2: sc = struct.unpack("<f", vv)[0]
                elif g == 3: ty = vv
            pieces.append((p, sc, ty))
        else:
            other.append((f, w, v))
    return pieces, other


def write_model(path, pieces, other):
    out = bytearray()
    for p, sc, ty in pieces:
        body = _enc_field(1, 2, p.encode("utf-8")) + _enc_field(2, 5, struct.pack("<f", sc))
        if ty != NORMAL: body += _enc_field(3, 0, ty)
        out += _enc_field(1, 2, body)
    for f, w, v in other:
        out += _enc_field(f, w, v)
    open(path, "wb").write(bytes(out))


def set_add_dummy_prefix(other, value):
    """Copy of the top-level fields with normalizer_spec.add_dummy_prefix (field 3 of field 3) set."""
    res = []
    for f, w, v in other:
        if f == 3:
            sub = [(g, ww, vv) for g, ww, vv in _fields(v) if g != 3] + [(3, 0, 1 if value else 0)]
            v = b"".join(_enc_field(*x) for x in sub)
        res.append((f, w, v))
    return res

# ----------------------------------------------------------------------------------------------------------------------
# The real Step1 tokenizer's first 68 pieces (names and types), so the tiny model mirrors its id layout.

_U = USER_DEFINED
META_68 = ([("<unk>", UNKNOWN), ("<s>", CONTROL), ("</s>", CONTROL), ("<|EOT|>", CONTROL), ("<|BOT|>", CONTROL),
            ("<|CALL_START|>", CONTROL), ("<|CALL_END|>", CONTROL), ("<|THINK_START|>", CONTROL), ("<|THINK_END|>", CONTROL),
            ("<|IMG_START|>", CONTROL), ("<|IMG_END|>", CONTROL), ("<|META_START|>", CONTROL), ("<|META_END|>", CONTROL),
            ("<im_patch>", CONTROL), ("<im_start>", CONTROL), ("<im_end>", CONTROL), ("<dream>", CONTROL),
            ("<dream_start>", CONTROL), ("<dream_end>", CONTROL), ("<|MASK_1e69f|>", _U), ("<|UNMASK_1e69f|>", _U),
            ("<video_start>", CONTROL), ("<video_end>", CONTROL), ("<row_patch>", CONTROL), ("<column_patch>", CONTROL),
            ("<|SEP_1e69f|>", _U)]
           + [(f"<user_defined_symbol_{k}>", _U) for k in range(22, 27)]
           + [("<audio_start>", CONTROL), ("<audio_end>", CONTROL), ("<text_start>", CONTROL), ("<text_end>", CONTROL),
              ("<|TTS|>", CONTROL), ("<|ASR|>", CONTROL), ("<|TQAA|>", CONTROL), ("<|AQTA|>", CONTROL)]
           + [(f"<user_defined_symbol_{k}>", _U) for k in range(35, 64)])
assert len(META_68) == 68
N_AUDIO = 9216

TOKENIZER_CONFIG = {"bos_token": "<s>", "clean_up_tokenization_spaces": False, "eos_token": "</s>", "legacy": False,
                    "model_max_length": 65536, "pad_token": "<unk>", "padding_side": "left", "sp_model_kwargs": {},
                    "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>", "use_default_system_prompt": False}


def training_corpus(n_lines=4000, seed=1234):
    rng = random.Random(seed)
    en = ("the a of and to in is you that it he was for on are as with his they at be this have from or one had by "
          "word but not what all were we when your can said there use an each which she do how their if will up other "
          "about out many then them these so some her would make like him into time has look two more write go see "
          "number no way could people my than first water been call who oil its now find long down day did get come "
          "made may part audio voice speech emotion happy sad angry style whisper speaker prompt text tokens generate "
          "following timbre prosody speaking assistant human system remove noise silent portions natural sounds "
          "reference corresponding expertise enhancement instructions adjustments editing tuning specialist").split()
    zh = ("你好 世界 今天 天气 真不错 我们 去 公园 散步 吧 这是 一段 参考 音频 声音 情感 开心 难过 生气 说话 风格 "
          "四川话 粤语 吃饭 没得 要得 巴适 晓得 老师 学生 中国 北京 上海 重庆 成都 广州 电话 手机 朋友 家人 工作 "
          "学习 时间 问题 知道 觉得 可以 因为 所以 但是 如果 已经 还是 什么 怎么 为什么 非常 喜欢 一起 现在 明天 "
          "昨天 东西 地方 事情 音乐 电影 故事 新闻 广告 节目 温柔 害羞 撒娇 大声 低语 笑 叹气 呼吸 惊讶").split()
    py = ("ni3 hao3 zhong4 yao4 chong2 xin1 xing2 hang2 le5 de5 yin1 yue4 kuai4 le4 chang2 zhang3 shu4 ju4").split()
    tags = ["[Laughter]", "[Breathing]", "[Sigh]", "[Uhm]", "[Surprise-oh]", "[Confirmation-en]", "[Question-ei]",
            "[Dissatisfaction-hnn]", "[Sichuanese]", "[Cantonese]", "[Japanese]", "[Korean]"]
    punct_zh, punct_en = "，。！？：；、", ",.!?:;"
    lines = []
    for _ in range(n_lines):
        kind = rng.random()
        if kind < 0.35:
            ws = [rng.choice(en) for _ in range(rng.randint(4, 14))]
            s = " ".join(ws).capitalize() + rng.choice(punct_en)
        elif kind < 0.7:
            s = "".join(rng.choice(zh) + (rng.choice(punct_zh) if rng.random() < 0.2 else "") for _ in range(rng.randint(3, 10)))
        elif kind < 0.85:
            s = "".join(rng.choice(zh) for _ in range(rng.randint(1, 4))) + " " + " ".join(rng.choice(en) for _ in range(rng.randint(1, 4)))
        else:
            s = rng.choice(tags) + "".join(rng.choice(zh) for _ in range(rng.randint(1, 5))) + \
                (" " + " ".join(rng.choice(py) for _ in range(rng.randint(1, 3))) if rng.random() < 0.5 else "")
        if rng.random() < 0.1:
            s += " " + str(rng.randint(0, 99999))
        lines.append(s)
    return lines


def cmd_train(a):
    import sentencepiece as spm
    os.makedirs(a.out, exist_ok=True)
    tmp = os.path.join(a.out, "_corpus.txt")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(training_corpus()) + "\n")
    prefix = os.path.join(a.out, "_tiny")
    spm.SentencePieceTrainer.train(
        input=tmp, model_prefix=prefix, model_type="unigram", vocab_size=a.vocab_size, hard_vocab_limit=False,
        character_coverage=0.9995, byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        control_symbols=[n for n, _ in META_68[3:]], num_threads=1, seed_sentencepiece_size=20000,
        shuffle_input_sentence=False, minloglevel=2)
    pieces, other = read_model(prefix + ".model")
    for i, (n, ty) in enumerate(META_68):           # real names/types for ids 0..67
        assert pieces[i][0] == n, (i, pieces[i], n)
        pieces[i] = (n, 0.0, ty)
    assert pieces[68][0] == "<0x00>" and pieces[68 + 255][0] == "<0xFF>"
    base = len(pieces)
    pieces += [(f"<audio_{k}>", 0.0, USER_DEFINED) for k in range(N_AUDIO)]
    write_model(os.path.join(a.out, "tokenizer.model"), pieces, other)
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump(TOKENIZER_CONFIG, f, indent=2)
    for p in (tmp, prefix + ".model", prefix + ".vocab"):
        os.remove(p)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.out, "tokenizer.model"))
    print(f"tiny model: {len(pieces)} pieces, audio base {base}, byte base 68; sample "
          f"{sp.encode('你好 world<audio_3>😀', out_type=str)}")

# ----------------------------------------------------------------------------------------------------------------------
# Corpus for reference tokenizations.

CORPUS = [
    "你好，世界！", "今天天气真不错，我们去公园散步吧。", "Hello, world! This is a test.", "The quick brown fox jumps over the lazy dog.",
    "我喜欢 Python 编程 and 机器学习。", "重(zhong4)要的事情说三遍，chong2 fu4！", "ni3 hao3 ma5?",
    "[Laughter]哈哈，太好笑了！", "[Sichuanese]你吃饭没得？巴适得板！", "[Cantonese]你食咗饭未呀？", "[Japanese]こんにちは、元気ですか？",
    "[Korean]안녕하세요", "我[Breathing]有点累了[Sigh]。", "[Surprise-oh] Oh really?  [Uhm] I see.",
    "I love it 😀🎉!", "生僻字：𠀀𪚥龘齉 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "line1\nline2\n\nline3\n", "  leading spaces", "a  b   c    d",
    "trailing space ", "tab\tseparated\tvalues", "CRLF\r\nline", "\u3000全角空格和ＡＢＣ１２３", "cafe\u0301 café naïve",
    "12345 3.1415 2025年11月", "<audio_1><audio_1025><audio_2000>",
    "speaker audio tokens: \n<audio_12><audio_873><audio_1999><audio_3000><audio_5119>\n[speaker_end]\n",
    "<audio_5>abc", "x<audio_6> y <audio_7>", "<s>hello</s>", "<s><|BOT|> assistant\n<audio_1><|EOT|>", "<|BOT|> assistant\n<audio_1><|EOT|>", "<unk> unknown",
    "literal <0x41> byte piece", "▁already ▁prefixed", "", " ", "  ", "\n", "\n\n", "\nhello", "\n[Sichuanese]今天真巴适",
    "system\nAs a highly skilled audio editing and tuning specialist", "human\n", "assistant\n",
    "Make the following audio more happy. The text corresponding to the audio is: 你好\n",
    "<|CALL_START|>x<|MASK_1e69f|>y<user_defined_symbol_40>", "<audio_9215><audio_0>", "<audio_9216> is not a token",
    "<audio_>", "\x00\x01 control chars", "مرحبا بالعالم", "Привет, мир!", "e\u0301\u0302 stacked",
]

# ----------------------------------------------------------------------------------------------------------------------
# Transcription of the reference prompt code (tts.py, tokenizer.py, cosyvoice.py).

CLONE_TPL = ("Generate audio with the following timbre, prosody and speaking style\n\n[speaker_start]\nspeaker name: {speaker}\n"
             "speaker prompt text: \n{prompt_text}\nspeaker audio tokens: \n{prompt_wav_tokens}\n[speaker_end]\n")
EDIT_SYS = ("As a highly skilled audio editing and tuning specialist, you excel in interpreting user instructions and applying "
            "precise adjustments to meet their needs. Your expertise spans a wide range of enhancement capabilities, including "
            "but not limited to:\n# Emotional Enhancement\n# Speaking Style Transfer\n# Non-linguistic Adjustments\n# Audio "
            "Tuning & Editing\nNote: You will receive instructions in natural language and are expected to accurately "
            "interpret and execute the most suitable audio edits and enhancements.\n")


def merge_vq0206_to_token_str(vq02, vq06):
    _vq06 = [1024 + x for x in vq06]
    result, i, j = [], 0, 0
    while i < len(vq02) - 1 and j < len(_vq06) - 2:
        result.extend(vq02[i:i + 2] + _vq06[j:j + 3]); i += 2; j += 3
    return "".join(f"<audio_{x}>" for x in result)


def wav2token_ids(vq02_ori, vq06_ori):
    vq02 = [int(x) + 65536 for x in vq02_ori]; vq06 = [int(x) + 65536 + 1024 for x in vq06_ori]
    n = min(len(vq06) // 3, len(vq02) // 2); out = []
    for k in range(n):
        out += vq02[k * 2:(k + 1) * 2]; out += vq06[k * 3:(k + 1) * 3]
    return out


def reshape(mix_seq):
    mix_seq = list(mix_seq)
    if len(mix_seq) % 5 > 0:
        pad_len = 5 - (len(mix_seq) % 5)
        mix_seq += [0, 0, 0, 1024, 1024, 1024][-pad_len:]
    g = len(mix_seq) // 5
    vq02 = sum([mix_seq[i * 5:i * 5 + 2] + [1024] for i in range(g)], [])
    vq06 = sum([mix_seq[i * 5 + 2:i * 5 + 5] for i in range(g)], [])
    return [[a, b - 1024 + 1025] for a, b in zip(vq02, vq06)]


def clone_voice_id(prompt_text, samples_f32):
    import numpy as np
    h = hashlib.sha256(); h.update(prompt_text.encode("utf-8"))
    wav = np.asarray(samples_f32, dtype=np.float32)
    s = np.concatenate([wav.flatten()[:1000], wav.flatten()[-1000:]]) if wav.size > 2000 else wav.flatten()
    h.update(s.tobytes())
    return "clone_" + h.hexdigest()[:16]


def clone_prompt(enc, text, prompt_text, speaker, prompt_wav_tokens):
    prompt = CLONE_TPL.format(speaker=speaker, prompt_text=prompt_text, prompt_wav_tokens=prompt_wav_tokens)
    hist = [1] + [4] + enc(f"system\n{prompt}") + [3]
    pre = enc("\n"); tgt = enc("\n" + text)[len(pre):]
    return hist + [4] + enc("human\n") + tgt + [3] + [4] + enc("assistant\n")


def edit_instruction(audio_text, edit_type, edit_info=None, text=None):
    audio_text = audio_text.strip() if audio_text else ""
    if edit_type in {"emotion", "speed"}:
        if edit_info == "remove":
            return f"Remove any emotion in the following audio and the reference text is: {audio_text}\n"
        return f"Make the following audio more {edit_info}. The text corresponding to the audio is: {audio_text}\n"
    if edit_type == "style":
        if edit_info == "remove":
            return f"Remove any speaking styles in the following audio and the reference text is: {audio_text}\n"
        return f"Make the following audio more {edit_info} style. The text corresponding to the audio is: {audio_text}\n"
    if edit_type == "denoise":
        return ("Remove any noise from the given audio while preserving the voice content clearly. Ensure that the speech "
                "quality remains intact with minimal distortion, and eliminate all noise from the audio.\n")
    if edit_type == "vad":
        return ("Remove any silent portions from the given audio while preserving the voice content clearly. Ensure that the "
                "speech quality remains intact with minimal distortion, and eliminate all silence from the audio.\n")
    if edit_type == "paralinguistic":
        return f"Add some non-verbal sounds to make the audio more natural, the new text is : {text}\n  The text corresponding to the audio is: {audio_text}\n"
    raise ValueError(edit_type)


def edit_prompt(enc, instruct_prefix, audio_token_str):
    audio_token_str = audio_token_str.strip()
    hist = [1] + [4] + enc(f"system\n{EDIT_SYS}") + [3]
    return hist + [4] + enc("human\n") + enc(f"{instruct_prefix}\n{audio_token_str}\n") + [3] + [4] + enc("assistant\n")


def lcg_codes(n, modulus, seed):
    out, x = [], seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) % (1 << 31); out.append(x % modulus)
    return out


def lcg_samples(n, seed):
    """Exactly representable float32 values in [-1, 1): (k / 2^23) - 1 with k from an LCG, so C# can regenerate them."""
    out, x = [], seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) % (1 << 31); out.append((x >> 7) / float(1 << 23) - 1.0)
    return out


PROMPT_TEXT = "  你好，这是一段参考音频。Hello there!  "
CLONE_TARGETS = ["[Sichuanese]今天天气真巴适，我们去吃火锅嘛。", "Hello world, this is a cloned voice.", " leading space and 😀",
                 "重(zhong4)要的事情[Laughter]", "\nstarts with newline", ""]
EDITS = [("emotion", "happy", None), ("emotion", "remove", None), ("emotion", "act_coy", None), ("style", "whisper", None),
         ("style", "remove", None), ("style", "act_coy", None), ("speed", "faster", None), ("speed", "more slower", None),
         ("speed", "remove", None), ("denoise", None, None), ("vad", None, None),
         ("paralinguistic", None, "你好[Laughter]，今天[Breathing]天气真好。")]
EDIT_AUDIO_TEXT = "  你好，今天天气真好。 \n"


def prompt_cases(enc):
    vq02 = lcg_codes(13, 1024, 7); vq06 = lcg_codes(20, 4096, 11)        # 6 groups (vq02 limits), vq06 tail dropped
    audio_str = merge_vq0206_to_token_str(vq02, vq06)
    samples = lcg_samples(4321, 3)
    speaker = clone_voice_id(PROMPT_TEXT, samples)
    clones = [{"target_text": t, "ids": clone_prompt(enc, t, PROMPT_TEXT, speaker, audio_str)} for t in CLONE_TARGETS]
    edits = []
    for et, info, text in EDITS:
        instr = edit_instruction(EDIT_AUDIO_TEXT, et, info, text)
        edits.append({"edit_type": et, "edit_info": info, "text": text, "instruction": instr,
                      "ids": edit_prompt(enc, instr, audio_str)})
    return {"vq02": vq02, "vq06": vq06, "audio_str": audio_str, "prompt_text": PROMPT_TEXT, "speaker": speaker,
            "samples_seed": 3, "samples_count": 4321, "edit_audio_text": EDIT_AUDIO_TEXT, "clone": clones, "edit": edits}


def mapping_cases():
    res = {"speaker_ids": [], "wav2token": [], "reshape": []}
    for n, seed, text in [(4321, 3, PROMPT_TEXT), (1500, 5, "short"), (2000, 9, ""), (2001, 9, "边界"), (0, 1, "empty")]:
        res["speaker_ids"].append({"n": n, "seed": seed, "text": text, "id": clone_voice_id(text, lcg_samples(n, seed))})
    for n02, n06 in [(13, 20), (10, 15), (2, 2), (0, 0), (7, 30)]:
        a, b = lcg_codes(n02, 1024, n02 + 1), lcg_codes(n06, 4096, n06 + 2)
        res["wav2token"].append({"vq02": a, "vq06": b, "ids": wav2token_ids(a, b), "str": merge_vq0206_to_token_str(a, b)})
    stream = wav2token_ids(lcg_codes(8, 1024, 5), lcg_codes(12, 4096, 6))
    for n in range(1, 12):                                    # generated ids = n audio ids + EOS (tts.py drops the last)
        generated = stream[:n] + [3]
        codes = [x - 65536 for x in generated[:-1]]
        res["reshape"].append({"generated": generated, "codes": codes, "reshaped": reshape(codes)})
    return res

# ----------------------------------------------------------------------------------------------------------------------
# Reference tokenizers.


def build_hf_fast_453(model_path):
    """The tokenizers pipeline transformers 4.53.3 builds (LlamaConverter, legacy=False, add_prefix_space default)."""
    from tokenizers import Tokenizer, AddedToken, models, pre_tokenizers, decoders
    pieces, _ = read_model(model_path)
    vocab = [(p, 0.0 if i < 3 else sc) for i, (p, sc, _) in enumerate(pieces)]
    tok = Tokenizer(models.Unigram(vocab, 0, True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1)])
    tok.add_tokens([AddedToken(p, normalized=False, special=(ty == CONTROL))
                    for p, _, ty in pieces if ty in (CONTROL, USER_DEFINED)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
    return tok


def build_slow_453(model_path):
    """Transcription of transformers 4.53.3 LlamaTokenizer(legacy=False).tokenize + convert_tokens_to_ids."""
    import sentencepiece as spm
    pieces, other = read_model(model_path)
    tmp = model_path + ".nodummy"
    write_model(tmp, pieces, set_add_dummy_prefix(other, False))
    sp = spm.SentencePieceProcessor(model_file=tmp); os.remove(tmp)
    specials = ["<unk>", "<s>", "</s>"]                       # the slow tokenizer's added tokens with this config
    unk_len = len(sp.encode("<unk>", out_type=str))

    def _tokenize(t):
        if not t.startswith(("▁", " ")):
            return sp.encode(t, out_type=str)
        toks = sp.encode("<unk>" + t, out_type=str)
        return toks[unk_len:] if len(toks) >= unk_len else toks

    def encode(text):
        if len(text) == 0:
            return []
        text = "▁" + text.replace("▁", " ")
        parts, i = [], 0                                      # trie split on the special tokens (longest first)
        while i < len(text):
            m = next((s for s in sorted(specials, key=len, reverse=True) if text.startswith(s, i)), None)
            j = i
            if m is None:
                while j < len(text) and not any(text.startswith(s, j) for s in specials): j += 1
                parts.append(text[i:j]); i = j
            else:
                parts.append(m); i += len(m)
        toks = []
        for p in parts:
            toks += [p] if p in specials else _tokenize(p)
        if len(toks) > 1 and toks[0] == "▁" and toks[1] in specials:
            toks = toks[1:]
        return [sp.piece_to_id(t) for t in toks]
    return encode


def versions():
    v = {"python": sys.version.split()[0]}
    for m in ("sentencepiece", "tokenizers", "transformers"):
        try: v[m] = __import__(m).__version__
        except Exception as e: v[m] = f"missing ({e})"
    return v


def cmd_reference(a):
    import sentencepiece as spm
    os.makedirs(a.out, exist_ok=True)
    summary = []
    for k, d in enumerate(a.model_dir):
        model = os.path.join(d, "tokenizer.model")
        fast = build_hf_fast_453(model)
        enc = lambda s: fast.encode(s, add_special_tokens=False).ids
        others = {"sentencepiece_raw": (lambda sp: (lambda s: sp.encode(s)))(spm.SentencePieceProcessor(model_file=model))}
        try: others["slow_llama_453_transcribed"] = build_slow_453(model)
        except Exception as e: others["slow_llama_453_transcribed"] = repr(e)
        auto_info = {}
        try:
            import transformers
            at = transformers.AutoTokenizer.from_pretrained(d)
            auto_info = {"class": type(at).__name__, "mro": [c.__name__ for c in type(at).__mro__][:6],
                         "transformers": transformers.__version__}
            others["hf_auto_installed"] = lambda s, at=at: at.encode(s, add_special_tokens=False)
            auto_info["bos_check_default_encode('hello')"] = at.encode("hello")
        except Exception as e:
            auto_info = {"error": repr(e)[:500]}
        try:
            import transformers
            from transformers import LlamaTokenizer
            lt = LlamaTokenizer.from_pretrained(d, legacy=False)
            auto_info["LlamaTokenizer_class"] = type(lt).__name__
            others["hf_LlamaTokenizer_installed"] = lambda s, lt=lt: lt.encode(s, add_special_tokens=False)
        except Exception as e:
            auto_info["LlamaTokenizer_error"] = repr(e)[:500]
        cases, diffs = [], {}
        for text in CORPUS:
            e = fast.encode(text, add_special_tokens=False)
            c = {"text": text, "ids": e.ids, "pieces": e.tokens,
                 "decoded": fast.decode(e.ids, skip_special_tokens=False),
                 "decoded_skip_special": fast.decode(e.ids, skip_special_tokens=True)}
            for name, fn in others.items():
                if isinstance(fn, str): continue
                try: ids = list(fn(text))
                except Exception as ex: ids = repr(ex)[:200]
                if ids != e.ids:
                    c.setdefault("differs", {})[name] = ids; diffs[name] = diffs.get(name, 0) + 1
            cases.append(c)
        pr = prompt_cases(enc)
        # the same prompts through the alternatives, to see whether any of them changes a prompt id
        prompt_diffs = {}
        for name, fn in others.items():
            if isinstance(fn, str): continue
            try:
                alt = prompt_cases(lambda s, fn=fn: list(fn(s)))
                n = sum(x["ids"] != y["ids"] for x, y in zip(alt["clone"] + alt["edit"], pr["clone"] + pr["edit"]))
                prompt_diffs[name] = n
            except Exception as ex:
                prompt_diffs[name] = repr(ex)[:200]
        pieces, other = read_model(model)
        res = {"versions": versions(), "reference": "hf_fast (tokenizers pipeline of transformers 4.53.3 LlamaConverter, legacy=False)",
               "auto_tokenizer": auto_info, "n_pieces": len(pieces),
               "audio_base": next(i for i, (p, _, _) in enumerate(pieces) if p == "<audio_0>"),
               "corpus": cases, "prompts": pr, "corpus_differences": diffs, "prompt_differences": prompt_diffs,
               "mapping": mapping_cases()}
        name = os.path.basename(os.path.normpath(d))
        with open(os.path.join(a.out, f"expected_{name}.json"), "w", encoding="utf-8") as f:
            json.dump(res, f, ensure_ascii=False, indent=1)
        summary.append(f"{name}: pieces {len(pieces)} corpus {len(cases)} diffs {diffs} prompt diffs {prompt_diffs} auto {auto_info}")
    print("\n".join(summary))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(); sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train"); t.add_argument("--out", required=True); t.add_argument("--vocab-size", type=int, default=1200)
    r = sub.add_parser("reference"); r.add_argument("--model-dir", action="append", required=True); r.add_argument("--out", required=True)
    a = ap.parse_args()
    {"train": cmd_train, "reference": cmd_reference}[a.cmd](a)
