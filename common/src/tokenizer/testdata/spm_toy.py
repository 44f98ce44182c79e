"""Regenerates spm_toy.json: a small SentencePiece BPE model and its own
encodings, the ground truth for the SentencePiece path of the tokenizer.

    pip install sentencepiece
    python3 spm_toy.py ../../../../../shared/data/reference/tokenizer_smollm2-135m.jsonl

Token types use llama.cpp's numbering (1 normal, 2 unknown, 3 control,
4 user-defined, 5 unused, 6 byte), as a GGUF converter would write them.
"""
import io
import json
import sys

import sentencepiece as spm

corpus = [json.loads(line)["text"] for line in open(sys.argv[1])]
corpus = [t for t in corpus if t.strip()]

model = io.BytesIO()
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(corpus * 3), model_writer=model, model_type="bpe",
    vocab_size=700, byte_fallback=True, split_digits=True, character_coverage=0.9995,
    normalization_rule_name="identity", remove_extra_whitespaces=False,
    add_dummy_prefix=True, allow_whitespace_only_pieces=True,
    user_defined_symbols=["<tool>"], max_sentence_length=100000, minloglevel=2)
sp = spm.SentencePieceProcessor(model_proto=model.getvalue())

tokens, scores, types = [], [], []
for i in range(sp.get_piece_size()):
    piece = sp.id_to_piece(i)
    tokens.append(piece)
    scores.append(sp.get_score(i))
    if sp.is_unknown(i):
        types.append(2)
    elif sp.is_control(i):
        types.append(3)
    elif sp.is_byte(i):
        types.append(6)
    elif sp.is_unused(i):
        types.append(5)
    elif piece == "<tool>":
        types.append(4)
    else:
        types.append(1)

cases = ["Hello world", "The quick brown fox jumps over the lazy dog.",
         "   leading and trailing spaces   ", "numbers 1234567890 3.14159",
         "emoji 🚀 and accents: café naïve", "日本語のテキスト", "tabs\tand\nnewlines",
         "Summarize: Manny Pacquiao decided to train", "x+y = 4z, x*y = 4z^2",
         "call <tool> now", "", " ", "a"]
cases += [t[:300] for t in corpus[10:20]]

with open("spm_toy.json", "w") as f:
    f.write("{\n")
    f.write(' "tokens": ' + json.dumps(tokens, ensure_ascii=False) + ",\n")
    f.write(' "scores": ' + json.dumps(scores) + ",\n")
    f.write(' "types": ' + json.dumps(types) + ",\n")
    f.write(' "cases": [\n' + ",\n".join(
        "  " + json.dumps({"text": c, "ids": sp.encode(c)}, ensure_ascii=False)
        for c in cases) + "\n ]\n}\n")
