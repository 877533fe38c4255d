"""Train the bundled SentencePiece tokenizer on captions from the grammar.

usage: /usr/bin/python3 models/tokenizer.py OUT_DIR   (writes OUT_DIR/spiece.model)
Unigram, byte_fallback, umT5 special ids: pad 0, eos 1, unk 2, no bos.
"""
import os
import sys

import numpy as np
import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import gen  # noqa: E402

VOCAB = 384


def captions(n=20000, seed=7):
    rng = np.random.default_rng(seed)
    out = [gen.caption(gen.sample_spec(rng, allow_held_out=True)) for _ in range(n)]
    out += [p["prompt"] for p in gen.test_prompts(40)]
    # The grammar is so repetitive that whole words are rarely maximal repeats,
    # the unigram trainer's seed pieces; word-shuffled copies make them so.
    shuf = []
    for c in out[: n // 2]:
        w = c.split()
        rng.shuffle(w)
        shuf.append(" ".join(w))
    return out + shuf


def train(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    txt = os.path.join(out_dir, "captions.txt")
    with open(txt, "w") as f:
        f.write("\n".join(captions()) + "\n")
    spm.SentencePieceTrainer.train(
        input=txt, model_prefix=os.path.join(out_dir, "spiece"), model_type="unigram",
        vocab_size=VOCAB, byte_fallback=True, hard_vocab_limit=False, character_coverage=1.0,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        num_threads=1, seed_sentencepiece_size=100000, minloglevel=2)
    os.remove(txt)
    os.remove(os.path.join(out_dir, "spiece.vocab"))
    return os.path.join(out_dir, "spiece.model")


class Tokenizer:
    """ids = text pieces + eos(1), padded with 0 to text_len; mask 1 on real tokens."""

    def __init__(self, path, text_len):
        self.sp = spm.SentencePieceProcessor(model_file=path)
        self.text_len = text_len

    def __call__(self, texts):
        import torch
        ids = torch.zeros(len(texts), self.text_len, dtype=torch.int64)
        mask = torch.zeros_like(ids)
        for i, t in enumerate(texts):
            p = (self.sp.encode(t) + [1])[:self.text_len]
            ids[i, :len(p)] = torch.tensor(p)
            mask[i, :len(p)] = 1
        return ids, mask


if __name__ == "__main__":
    p = train(sys.argv[1] if len(sys.argv) > 1 else "models/work/tokenizer")
    sp = spm.SentencePieceProcessor(model_file=p)
    caps = captions(2000, seed=99)
    lens = [len(sp.encode(c)) + 1 for c in caps]
    print(p, "vocab", sp.get_piece_size(), "max tokens", max(lens), "mean", sum(lens) / len(lens))
    print(caps[0], sp.encode(caps[0], out_type=str))
