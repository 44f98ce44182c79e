#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into fuzz/seeds/<target>/.

The seeds are committed; rerun this only to change them:

    python3 fuzz/gen_seeds.py [--models ~/.cache/ouro/models]

Everything is synthetic and deterministic, except the `real-*` GGUF seeds:
when the model directory holds smollm2-135m.gguf and qwen2.5-coder-0.5b.gguf,
their headers (metadata only, token arrays cut to a few dozen entries, the
model shrunk to a few hundred weights) become seeds too. Without the models
those seeds are left as they are.
"""

import argparse
import json
import os
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "seeds"


def write(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# --- protobuf ---------------------------------------------------------------


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return (n << 1) ^ (n >> 31) if n >= 0 else ((-n) << 1) - 1


def key(field, wire):
    return varint(field << 3 | wire)


def f_varint(field, n):
    return key(field, 0) + varint(n) if n else b""


def f_bytes(field, b):
    return key(field, 2) + varint(len(b)) + b


def f_str(field, s):
    return f_bytes(field, s.encode()) if s else b""


def f_float(field, x):
    return key(field, 5) + struct.pack("<f", x) if x else b""


def f_packed(field, values, enc=varint):
    return f_bytes(field, b"".join(enc(v) for v in values)) if values else b""


def f_packed_float(field, values):
    return f_bytes(field, b"".join(struct.pack("<f", v) for v in values)) if values else b""


def node_dist(ids, probs):
    return f_packed(1, ids) + f_packed_float(2, probs)


def draft_round(round_, committed, tokens, parents, q=()):
    return (
        f_varint(1, round_)
        + f_varint(2, committed)
        + f_packed(3, tokens)
        + f_packed(4, [zigzag(p) for p in parents])
        + b"".join(f_bytes(5, node_dist(i, p)) for i, p in q)
    )


def sampling(temperature, top_k=0, top_p=0.0, seed=0):
    return f_float(1, temperature) + f_varint(2, top_k) + f_float(3, top_p) + f_varint(4, seed)


def frame(msg):
    return struct.pack(">I", len(msg)) + msg


def gen_draft_round():
    t = "draft_round"
    write(t, "greedy-chain", draft_round(3, 10, [5, 6, 7], [-1, 0, 1]))
    write(
        t,
        "sampled-tree",
        draft_round(
            1,
            4,
            [1, 2, 3, 4],
            [-1, 0, -1, 2],
            [([1, 9], [0.75, 0.25]), ([2], [1.0]), ([3, 4, 200], [0.5, 0.3, 0.2]), ([4], [1.0])],
        ),
    )
    write(
        t,
        "sampled-top-p",
        draft_round(2, 7, [10, 11, 12, 13, 14], [-1, 0, 0, 1, -1], [([10 + i, 20], [0.9, 0.1]) for i in range(5)]),
    )
    write(t, "wide-root", draft_round(6, 1, list(range(16)), [-1] * 16))
    write(t, "bad-parent", draft_round(3, 1, [1, 2], [1, -1]))
    write(t, "bad-dist", draft_round(4, 1, [1, 2], [-1, 0], [([1, 1], [0.5, 0.5]), ([2], [float("nan")])]))
    write(t, "empty", b"")


def gen_frame():
    t = "frame"
    open_ = f_str(1, "ab" * 32) + f_packed(2, [1, 2, 3, 4]) + f_bytes(3, sampling(0.7, 8, 0.9, 42))
    round1 = draft_round(1, 4, [5, 6, 7], [-1, 0, 1])
    round2 = draft_round(2, 6, [8, 9], [-1, -1], [([8], [1.0]), ([9, 10], [0.5, 0.5])])
    cloud = (
        frame(f_str(1, "secret") + f_bytes(4, b""))
        + frame(f_bytes(1, open_))
        + frame(f_bytes(2, round1))
        + frame(f_bytes(2, round2))
        + frame(f_bytes(3, b""))
    )
    write(t, "cloud-session", cloud)
    generate = f_str(1, "ab" * 32) + f_packed(2, [1, 2, 3]) + f_bytes(3, sampling(0.0)) + f_varint(4, 16)
    write(t, "cloud-generate", frame(f_str(1, "tok") + f_bytes(3, generate + f_packed(5, [2]))))
    opened = f_str(1, "s-1") + f_varint(2, 4) + f_varint(3, 1) + f_varint(4, 7)
    verdict = f_varint(1, 1) + f_packed(2, [0, 1]) + f_varint(3, 42) + f_varint(4, 7) + f_packed(5, [3]) + f_varint(6, 900)
    edge = (
        frame(f_bytes(3, f_bytes(1, opened)))
        + frame(f_bytes(3, f_bytes(2, verdict)))
        + frame(f_bytes(2, f_packed(1, [5, 6]) + f_str(2, "stop") + f_varint(3, 12)))
        + frame(f_bytes(4, f_varint(1, 16) + f_str(2, "unauthenticated")))
        + frame(f_bytes(3, f_bytes(3, f_varint(1, 9))))
    )
    write(t, "edge-replies", edge)
    write(t, "too-large", struct.pack(">I", (4 << 20) + 1) + b"\x0a\x00")
    write(t, "cut-prefix", frame(f_bytes(3, b"")) + b"\x00\x00")
    write(t, "cut-body", struct.pack(">I", 100) + b"\x0a\x05hello")
    write(t, "empty-frames", frame(b"") + frame(b""))


# --- GGUF -------------------------------------------------------------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
GGML = {"F32": 0, "F16": 1, "Q4_0": 2, "Q5_0": 6, "Q8_0": 8, "Q4K": 12, "Q6K": 14}
BLOCK = {"F32": (1, 4), "F16": (1, 2), "Q4_0": (32, 18), "Q5_0": (32, 22), "Q8_0": (32, 34), "Q4K": (256, 144), "Q6K": (256, 210)}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gval(vtype, v):
    fmt = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?", U64: "Q", I64: "q", F64: "d"}
    if vtype in fmt:
        return struct.pack("<" + fmt[vtype], v)
    if vtype == STR:
        return gstr(v)
    etype, items = v
    return struct.pack("<IQ", etype, len(items)) + b"".join(gval(etype, x) for x in items)


class Rng:
    """xorshift64*, so the seeds do not depend on Python's random module."""

    def __init__(self, seed):
        self.s = seed or 1

    def next(self):
        self.s ^= (self.s >> 12) & 0xFFFFFFFFFFFFFFFF
        self.s ^= (self.s << 25) & 0xFFFFFFFFFFFFFFFF
        self.s ^= (self.s >> 27) & 0xFFFFFFFFFFFFFFFF
        return (self.s * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF

    def unit(self):
        return (self.next() >> 11) / float(1 << 53) * 2.0 - 1.0


def tensor_bytes(dtype, shape, rng):
    """Plausible weights: small values, and finite f16 scales in quantized blocks."""
    n = 1
    for d in shape:
        n *= d
    if dtype == "F32":
        return b"".join(struct.pack("<f", rng.unit() * 0.5) for _ in range(n))
    if dtype == "F16":
        return b"".join(struct.pack("<e", rng.unit() * 0.5) for _ in range(n))
    block, size = BLOCK[dtype]
    assert n % block == 0, (dtype, shape)
    out = bytearray()
    scale = struct.pack("<e", 0.01)
    for _ in range(n // block):
        body = bytes(rng.next() & 0xFF for _ in range(size))
        if dtype in ("Q4_0", "Q5_0", "Q8_0"):
            body = scale + body[2:]
        elif dtype == "Q4K":
            body = scale + scale + body[4:]
        elif dtype == "Q6K":
            body = body[:-2] + scale
        out += body
    return bytes(out)


def gguf(metadata, tensors, seed=1, alignment=32):
    """metadata: [(key, type, value)]; tensors: [(name, dtype, candle shape (rows, cols))]."""
    rng = Rng(seed)
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for k, t, v in metadata:
        out += gstr(k) + struct.pack("<I", t) + gval(t, v)
    datas, offset = [], 0
    for name, dtype, shape in tensors:
        data = tensor_bytes(dtype, shape, rng)
        dims = list(reversed(shape))
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", GGML[dtype], offset)
        datas.append(data)
        offset += len(data)
        offset += (-offset) % alignment
    out += b"\x00" * ((-len(out)) % alignment)
    for data in datas:
        out += data + b"\x00" * ((-len(data)) % alignment)
    return bytes(out)


def model_meta(arch, hidden, heads, kv_heads, head_dim, ff, layers, ctx=16, extra=()):
    m = [
        ("general.architecture", STR, arch),
        ("general.alignment", U32, 32),
        (f"{arch}.embedding_length", U32, hidden),
        (f"{arch}.attention.head_count", U32, heads),
        (f"{arch}.attention.head_count_kv", U32, kv_heads),
        (f"{arch}.rope.dimension_count", U32, head_dim),
        (f"{arch}.feed_forward_length", U32, ff),
        (f"{arch}.block_count", U32, layers),
        (f"{arch}.context_length", U32, ctx),
        (f"{arch}.rope.freq_base", F32, 10000.0),
        (f"{arch}.attention.layer_norm_rms_epsilon", F32, 1e-5),
    ]
    return m + list(extra)


def model_tensors(vocab, hidden, q_dim, kv_dim, ff, layers, dtypes=None, bias=False, output=False):
    """The tensors of a llama-family model; dtypes maps a role (embd, q, k, v,
    o, gate, up, down, norm, output) to a ggml type, F32 by default."""
    d = {"norm": "F32"}
    d.update(dtypes or {})
    dt = lambda role: d.get(role, "F32")
    ts = [("token_embd.weight", dt("embd"), (vocab, hidden))]
    for i in range(layers):
        p = f"blk.{i}"
        ts += [
            (f"{p}.attn_norm.weight", dt("norm"), (hidden,)),
            (f"{p}.attn_q.weight", dt("q"), (q_dim, hidden)),
            (f"{p}.attn_k.weight", dt("k"), (kv_dim, hidden)),
            (f"{p}.attn_v.weight", dt("v"), (kv_dim, hidden)),
            (f"{p}.attn_output.weight", dt("o"), (hidden, q_dim)),
            (f"{p}.ffn_norm.weight", dt("norm"), (hidden,)),
            (f"{p}.ffn_gate.weight", dt("gate"), (ff, hidden)),
            (f"{p}.ffn_up.weight", dt("up"), (ff, hidden)),
            (f"{p}.ffn_down.weight", dt("down"), (hidden, ff)),
        ]
        if bias:
            ts += [
                (f"{p}.attn_q.bias", "F32", (q_dim,)),
                (f"{p}.attn_k.bias", "F32", (kv_dim,)),
                (f"{p}.attn_v.bias", "F32", (kv_dim,)),
            ]
    ts.append(("output_norm.weight", dt("norm"), (hidden,)))
    if output:
        ts.append(("output.weight", dt("output"), (vocab, hidden)))
    return ts


def gen_gguf():
    t = "gguf"
    # Llama, f32, tied embeddings: the smallest complete model.
    write(t, "llama-f32", gguf(model_meta("llama", 4, 1, 1, 4, 8, 1), model_tensors(8, 4, 4, 4, 8, 1)))
    # Qwen2: q/k/v biases, f16 weights, an output matrix, two layers, grouped KV heads.
    write(
        t,
        "qwen2-f16-bias",
        gguf(
            model_meta("qwen2", 8, 2, 1, 4, 8, 2),
            model_tensors(6, 8, 8, 4, 8, 2, {"q": "F16", "k": "F16", "gate": "F16", "output": "F16"}, True, True),
            seed=2,
        ),
    )
    # MiniCPM and its three scales.
    scales = [("minicpm.embedding_scale", F32, 12.0), ("minicpm.residual_scale", F32, 0.2), ("minicpm.logit_scale", F32, 4.0)]
    write(t, "minicpm-f32", gguf(model_meta("minicpm", 4, 2, 2, 2, 4, 1, extra=scales), model_tensors(5, 4, 4, 4, 4, 1), seed=3))
    # Q8_0 weights on ouro's packed kernel, Q4_0/Q5_0 re-encoded at load.
    write(
        t,
        "llama-q8-q4",
        gguf(
            model_meta("llama", 32, 2, 1, 16, 32, 1),
            model_tensors(4, 32, 32, 16, 32, 1, {"q": "Q8_0", "k": "Q4_0", "v": "Q5_0", "o": "Q8_0", "gate": "Q8_0", "up": "Q8_0", "down": "Q4_0", "embd": "Q8_0"}),
            seed=4,
        ),
    )
    # k-quants: Q4_K and Q6_K (packed kernels) at the 256-wide block.
    write(
        t,
        "llama-kquants",
        gguf(
            model_meta("llama", 256, 2, 1, 2, 2, 1),
            model_tensors(2, 256, 4, 2, 2, 1, {"embd": "Q4K", "q": "Q4_0", "k": "Q8_0", "v": "Q8_0", "o": "F16", "gate": "Q4K", "up": "Q6K", "down": "F16", "norm": "F16", "output": "Q6K"}, output=True),
            seed=5,
        ),
    )
    # Four heads of 2^62 + 2 dimensions: q_dim wraps to 8, the width of the q tensor.
    wrap = [(k, U64, (1 << 62) + 2) if k == "llama.rope.dimension_count" else (k, ty, v) for k, ty, v in model_meta("llama", 4, 4, 4, 0, 8, 1)]
    write(t, "head-dim-overflow", gguf(wrap, model_tensors(8, 4, 8, 8, 8, 1)))
    # An alignment of 0 (candle divides by it), a header alone, and a truncated file.
    align0 = [(k, t, 0 if k == "general.alignment" else v) for k, t, v in model_meta("llama", 4, 1, 1, 4, 8, 1)]
    write(t, "alignment-zero", gguf(align0, model_tensors(8, 4, 4, 4, 8, 1), alignment=1))
    write(t, "header-only", gguf(model_meta("llama", 4, 1, 1, 4, 8, 1), []))
    whole = gguf(model_meta("llama", 4, 1, 1, 4, 8, 1), model_tensors(8, 4, 4, 4, 8, 1))
    write(t, "truncated", whole[: len(whole) - 40])


# --- tokenizers -------------------------------------------------------------


def tok_meta(model, tokens, types=None, merges=None, scores=None, extra=()):
    m = [("tokenizer.ggml.model", STR, model), ("tokenizer.ggml.tokens", ARR, (STR, tokens))]
    if types is not None:
        m.append(("tokenizer.ggml.token_type", ARR, (I32, types)))
    if merges is not None:
        m.append(("tokenizer.ggml.merges", ARR, (STR, merges)))
    if scores is not None:
        m.append(("tokenizer.ggml.scores", ARR, (F32, scores)))
    return m + list(extra)


CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def gen_tokenizer():
    t = "gguf_tokenizer"
    # Byte-level BPE (gpt2) with Qwen2's pre-tokenizer and ChatML specials.
    alphabet = list("!,.0123HWdehlorw") + ["Ġ", "Ċ", "Ã", "¶"]
    words = ["He", "ll", "llo", "Hello", "Ġw", "or", "Ġwor", "ld", "Ġworld", "ĠĠ", "12", "Ã¶"]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = alphabet + words + specials
    merges = ["H e", "l l", "ll o", "He llo", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ġ Ġ", "1 2", "Ã ¶"]
    types = [1] * (len(alphabet) + len(words)) + [3] * len(specials)
    extra = [
        ("tokenizer.ggml.pre", STR, "qwen2"),
        ("tokenizer.ggml.bos_token_id", U32, tokens.index("<|endoftext|>")),
        ("tokenizer.ggml.eos_token_id", U32, tokens.index("<|im_end|>")),
        ("tokenizer.ggml.add_bos_token", BOOL, False),
        ("tokenizer.chat_template", STR, CHATML),
    ]
    write(t, "bpe-qwen2", gguf(tok_meta("gpt2", tokens, types, merges, extra=extra), []))
    # The same vocabulary with Llama 3's pre-tokenizer, no types, a user-defined token.
    extra3 = [("tokenizer.ggml.pre", STR, "llama-bpe"), ("tokenizer.ggml.eot_token_id", I32, len(tokens) - 1)]
    types3 = types[:-1] + [4]
    write(t, "bpe-llama3", gguf(tok_meta("gpt2", tokens, types3, merges, extra=extra3), []))
    write(t, "bpe-default-pre", gguf(tok_meta("gpt2", tokens, None, merges[:4]), []))
    # SentencePiece (llama): scores, byte fallback tokens, control and unknown tokens.
    spm = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x21>", "<0xC3>", "<0xB6>", "▁", "H", "e", "l", "o", "w", "r", "d", "▁H", "ll", "llo", "▁Hello", "▁w", "or", "▁world"]
    spm_types = [2, 3, 3, 6, 6, 6, 6] + [1] * (len(spm) - 7)
    spm_scores = [0.0] * 7 + [-float(i) for i in range(len(spm) - 7)]
    extra_spm = [("tokenizer.ggml.add_space_prefix", BOOL, True), ("tokenizer.ggml.unknown_token_id", U32, 0)]
    write(t, "spm-llama", gguf(tok_meta("llama", spm, spm_types, None, spm_scores, extra_spm), []))
    write(t, "spm-no-types", gguf(tok_meta("llama", spm, None, None, spm_scores, [("tokenizer.ggml.add_space_prefix", BOOL, False)]), []))
    write(t, "bad-merge", gguf(tok_meta("gpt2", tokens, types, ["Hello"]), []))


# --- real headers -----------------------------------------------------------


def read_gguf_metadata(path):
    """(key, type, value) for every metadata entry of a GGUF v2/v3 file."""
    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))

        def rstr():
            (n,) = rd("Q")
            return f.read(n).decode("utf8", "replace")

        def rval(t):
            fmt = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?", U64: "Q", I64: "q", F64: "d"}
            if t in fmt:
                return rd(fmt[t])[0]
            if t == STR:
                return rstr()
            (et,) = rd("I")
            (n,) = rd("Q")
            return (et, [rval(et) for _ in range(n)])

        magic, _version, _tensors, kvs = rd("4sIQQ")
        assert magic == b"GGUF"
        out = []
        for _ in range(kvs):
            k = rstr()
            (t,) = rd("I")
            out.append((k, t, rval(t)))
        return out


def cut_tokenizer(meta, keep, specials_from=None):
    """The metadata with the vocabulary cut to its first `keep` tokens (plus
    the special tokens from index `specials_from`, renumbered after them),
    merges and ids kept only where they still make sense."""
    d = {k: (t, v) for k, t, v in meta}
    tokens = d["tokenizer.ggml.tokens"][1][1]
    types = d.get("tokenizer.ggml.token_type", (None, (None, None)))[1][1]
    ids = list(range(min(keep, len(tokens))))
    if specials_from is not None:
        ids += [i for i in range(specials_from, len(tokens)) if types is None or types[i] == 3][:8]
    new_id = {old: new for new, old in enumerate(ids)}
    kept = [tokens[i] for i in ids]
    vocab = set(kept)
    out = []
    for k, t, v in meta:
        if k == "tokenizer.ggml.tokens":
            v = (STR, kept)
        elif k in ("tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
            v = (v[0], [v[1][i] for i in ids])
        elif k == "tokenizer.ggml.merges":
            ok = [m for m in v[1] if " " in m[1:] and all(p in vocab for p in m.split(" ", 1)) and m.replace(" ", "", 1) in vocab]
            v = (STR, ok[:48])
        elif k.startswith("tokenizer.ggml.") and k.endswith("_token_id"):
            if v not in new_id:
                continue
            v = new_id[v]
        elif k == "general.languages":
            pass
        out.append((k, t, v))
    return out, len(kept)


def shrink_model(meta, vocab):
    """A real model's metadata with its shape made tiny; the keys stay."""
    arch = next(v for k, _, v in meta if k == "general.architecture")
    small = {
        f"{arch}.block_count": 1,
        f"{arch}.embedding_length": 8,
        f"{arch}.feed_forward_length": 8,
        f"{arch}.attention.head_count": 2,
        f"{arch}.attention.head_count_kv": 1,
        f"{arch}.rope.dimension_count": 4,
        f"{arch}.vocab_size": vocab,
    }
    return [(k, t, small.get(k, v)) for k, t, v in meta], arch


def gen_real(models):
    for name, special_from, keep in [("smollm2-135m", None, 48), ("qwen2.5-coder-0.5b", 151643, 40)]:
        path = Path(models).expanduser() / f"{name}.gguf"
        if not path.exists():
            print(f"skipping real-{name}: {path} not found")
            continue
        meta = read_gguf_metadata(path)
        tok, vocab = cut_tokenizer(meta, keep, special_from)
        tok_only = [(k, t, v) for k, t, v in tok if k.startswith("tokenizer.")]
        write("gguf_tokenizer", f"real-{name}", gguf(tok_only, []))
        model, arch = shrink_model(tok, vocab)
        tensors = model_tensors(vocab, 8, 8, 4, 8, 1, bias=arch == "qwen2", output=arch == "qwen2")
        write("gguf", f"real-{name}", gguf(model, tensors, seed=7))


# --- text inputs ------------------------------------------------------------


def gen_api_request():
    t = "api_request"
    user = [{"role": "user", "content": "Hello"}]
    bodies = {
        "chat-minimal": {"model": "ouro", "messages": user},
        "chat-stream-stops": {
            "model": "fuzz-model",
            "messages": [{"role": "system", "content": "Be brief."}] + user,
            "stream": True,
            "stop": ["\n\nUser:", "wor"],
            "max_tokens": 10,
            "temperature": 0.7,
            "top_p": 0.9,
            "seed": 1,
        },
        "chat-parts": {
            "model": "ouro",
            "messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            "max_completion_tokens": 5,
            "response_format": {"type": "text"},
            "n": 1,
            "presence_penalty": 0,
            "logit_bias": {},
        },
        "completion": {"model": "ouro", "prompt": "Once upon", "stop": "!", "echo": False, "best_of": 1, "stream": False},
        "completion-batch-stream": {"model": "ouro", "prompt": ["Once upon a time"], "stream": True, "stop": ["é→", "rld"]},
        "completion-token-ids": {"model": "ouro", "prompt": [1, 2, 3, 99], "max_tokens": 4, "stop": ["ld!"]},
        "completion-token-batch": {"model": "ouro", "prompt": [[5, 100]], "stream": True},
        "rejected": {
            "model": "gpt-4",
            "messages": [{"role": "tool", "content": None}],
            "n": 2,
            "logprobs": True,
            "tools": [{}],
            "temperature": 3,
            "max_tokens": 100000,
        },
    }
    for name, body in bodies.items():
        write(t, name, json.dumps(body, ensure_ascii=False))
    write(t, "not-json", "{\"model\": \"ouro\", \"messages\": [")


def gen_stop_matcher():
    t = "stop_matcher"
    sep = lambda parts, b: bytes([b]).join(p.encode() for p in parts)
    cases = {
        "split-stop": (["STOP"], ["Hello S", "T", "OP world"]),
        "several": (["\n\nUser:", "User", "x"], ["The end.\n", "\nUs", "er: hi"]),
        "overlap": (["ababc", "bc"], ["abab", "abc"]),
        "multibyte": (["日本", "é!"], ["caf", "é", "日", "日本"]),
        "near-miss": (["<|im_end|>"], ["text <|im_e", "nd| more"]),
        "no-stops": ([], ["plain ", "text"]),
    }
    for name, (stops, deltas) in cases.items():
        write(t, name, sep(stops, 0xFE) + b"\xff" + sep(deltas, 0xFD))


def gen_phrase_pool():
    t = "phrase_pool"
    config = {"max_phrases": 64, "max_per_key": 4, "min_len": 2, "max_len": 6}
    phrases = [
        {"tokens": [1, 2, 3], "source": "Context", "hits": 0, "tick": 1, "protected": False},
        {"tokens": [1, 2, 4, 5], "source": "DrafterLookahead", "hits": 2, "tick": 3, "protected": True},
        {"tokens": [500, 501], "source": "VerifierOutput", "hits": 1, "tick": 2, "protected": False},
        {"tokens": [7, 8, 9, 10, 11, 12], "source": "Context", "hits": 0, "tick": 4, "protected": False},
    ]
    pool = {"magic": "ouro-phrase-pool", "version": 1, "config": config, "phrases": phrases}
    write(t, "pool", json.dumps(pool))
    write(t, "empty-pool", json.dumps({**pool, "phrases": []}))
    write(t, "tight-config", json.dumps({**pool, "config": {"max_phrases": 1, "max_per_key": 1, "min_len": 0, "max_len": 0}}))
    write(t, "wrong-version", json.dumps({**pool, "version": 2}))
    write(t, "not-a-pool", json.dumps({"magic": "something else"}))


def gen_link_profile():
    t = "link_profile"
    specs = [
        "4g",
        "delay=20ms,jitter=5ms,bw=20mbit,loss=0.5%,seed=7",
        "4g,loss=0,seed=3",
        "rtt=40ms",
        "wifi, bw=none",
        "delay=1.5s,jitter=250us,bw=100kbit,loss=0.001",
        "Intercontinental,rate=1gbps,delay=0",
    ]
    for i, s in enumerate(specs):
        write(t, f"spec-{i}", s)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.environ.get("OURO_MODELS", "~/.cache/ouro/models"))
    args = ap.parse_args()
    gen_draft_round()
    gen_frame()
    gen_gguf()
    gen_tokenizer()
    gen_real(args.models)
    gen_api_request()
    gen_stop_matcher()
    gen_phrase_pool()
    gen_link_profile()
    for d in sorted(ROOT.iterdir()):
        files = list(d.iterdir())
        print(f"{d.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
