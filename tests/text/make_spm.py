#!/usr/bin/python3
"""Regenerates the SentencePiece parity fixtures in tests/text/data/.

Run with Debian's python3 (python3-sentencepiece):

    /usr/bin/python3 tests/text/make_spm.py generate     # retrain + rewrite fixtures
    /usr/bin/python3 tests/text/make_spm.py encode MODEL CORPUS   # ids, one line each

`generate` writes a small multilingual training text, trains tiny unigram
models (byte fallback like umT5's spiece.model) with different normaliser
settings, writes the test corpus and SentencePiece's own ids for every corpus
line (ids then EOS, the format of `vdit tokenize`), and copies the nmt_nfkc
model to tests/data/tiny_spiece.model for other tests.

`encode` is what the live parity test uses: it re-encodes the corpus with the
installed SentencePiece so stale fixtures cannot hide a difference.
"""
import os
import random
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, 'data')

# name -> trainer options (all unigram).
MODELS = {
    # umT5-like: nmt_nfkc charsmap, byte fallback, ids pad 0, eos 1, unk 2, no bos. Also tests/data/tiny_spiece.model.
    'nfkc': dict(vocab_size=800, byte_fallback=True, pad_id=0, eos_id=1, unk_id=2, bos_id=-1),
    # identity normaliser, whitespace kept as is.
    'identity': dict(vocab_size=600, byte_fallback=True, normalization_rule_name='identity',
                     remove_extra_whitespaces=False),
    # user-defined symbols (matched before normalisation), case-folding charsmap.
    'user': dict(vocab_size=600, byte_fallback=True, normalization_rule_name='nmt_nfkc_cf',
                 user_defined_symbols=['<extra_id_0>', '<extra_id_1>', '[SEP]', '🙂', 'ab'],
                 control_symbols=['<ctl>']),
    # no byte fallback (runs of unknowns merge into one <unk>), no dummy prefix.
    'nobyte': dict(vocab_size=300, byte_fallback=False, normalization_rule_name='identity',
                   add_dummy_prefix=False, character_coverage=0.98),
}

WORDS = {
    'en': ('a video of a cat walking on the beach at sunset with waves and birds flying over '
           'the ocean camera slowly pans left cinematic lighting high quality detailed '
           'the quick brown fox jumps over the lazy dog while people are dancing in the street').split(),
    'zh': ['一只', '猫', '在', '海滩', '上', '散步', '日落', '时分', '海浪', '和', '飞鸟', '镜头',
           '缓慢', '向左', '平移', '电影', '灯光', '高质量', '细节', '色调', '艳丽', '过曝', '静态'],
    'ja': ['猫', 'が', '夕日', 'の', '浜辺', 'を', '歩いて', 'いる', '動画', 'カメラ', 'ゆっくり',
           'と', '左', 'に', 'パン', 'する', '映画', '的', 'な', '照明', 'です', 'ね'],
    'fr': ('une vidéo d\'un chat qui marche sur la plage au coucher du soleil élégant '
           'garçon façade naïve crème brûlée où été déjà Übermäßig straße Ærøskøbing').split(),
    'misc': ['123', '2024', '3.14', '1,000', '-', '--', '...', '!!', '?', '(', ')', '"', "'",
             '#', '@', '%', '&', '😀', '🎬', '🌅', 'ＡＢＣ', '１２３', 'ﬁ', '½', '™'],
}


def training_text():
    rng = random.Random(20261122)
    lines = []
    for i in range(3000):
        lang = rng.choice(['en', 'en', 'zh', 'ja', 'fr', 'misc'])
        n = rng.randint(3, 20)
        ws = [rng.choice(WORDS[lang]) for _ in range(n)]
        if lang in ('zh', 'ja') and rng.random() < 0.7:
            lines.append(''.join(ws))
        else:
            lines.append(' '.join(ws))
    return '\n'.join(lines) + '\n'


def corpus_lines():
    """The parity corpus, as bytes lines (no '\\n' inside)."""
    s = [
        'A video of a cat walking on the beach at sunset.',
        'the quick brown fox jumps over the lazy dog',
        '一只猫在海滩上散步，日落时分，镜头缓慢向左平移。',
        '色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量',
        '猫が夕日の浜辺を歩いている動画です。カメラはゆっくりと左にパンする。',
        'ひらがな カタカナ 漢字 ｶﾀｶﾅ（半角）',
        'Crème brûlée, naïve façade, Übermäßig, Ærøskøbing, São Paulo, Łódź, İstanbul',
        'e\u0301 vs é, A\u030a vs Å, ﬁne ﬂow, ½ ¾ ™ ㎏ ①②③',
        'ＡＢＣ ａｂｃ １２３ ！？ ｆｕｌｌｗｉｄｔｈ',
        'emoji: 😀🎬🌅 👍🏽 👨\u200d👩\u200d👧 🇫🇷 🙂🙂 ❤️',
        'digits 0123456789 3.14159 1,000,000 2024-11-22 12:34:56 +1e-6',
        'punctuation!!! ??? ... --- *** ((())) [[[ ]]] {{{}}} ,,,;;; ::: """ \'\'\' ~~~ ^^^',
        '   leading spaces',
        'trailing spaces   ',
        'repeated    spaces\t\ttabs \t mixed   ',
        ' ',
        '',
        '\t',
        'ideographic\u3000space and\u00a0nbsp and\u2003em space',
        'zero\u200bwidth\u200cjoiners\u200d and\ufeffbom',
        'Привет мир, Γειά σου κόσμε, مرحبا بالعالم, שלום עולם, 안녕하세요 세계, สวัสดีชาวโลก',
        'control chars \x01\x02\x07 and DEL \x7f and CR\rinside',
        'user symbols <extra_id_0> <extra_id_1>x[SEP]y 🙂ab abab <ctl> </s> <unk> <s>',
        'UPPER lower MiXeD CaSe ΣΊΣΥΦΟΣ STRASSE',
        'replacement char \ufffd literal',
        'x',
        '▁ already escaped ▁▁ metaspace',
        'a\x00b nul inside',
    ]
    lines = [t.encode('utf-8') for t in s]
    rng = random.Random(7)
    pool = ' '.join(WORDS['en'] + WORDS['fr']) + ''.join(WORDS['zh'] + WORDS['ja']) + ' 😀 123 ...'
    lines.append(''.join(rng.choice(pool) for _ in range(6000)).encode('utf-8'))  # very long
    lines += [
        b'\xff invalid lead byte',
        b'truncated \xe6\x97 sequence',
        b'overlong \xc0\xaf slash',
        b'surrogate \xed\xa0\x80 half',
        b'beyond \xf4\x90\x80\x80 max',
        b'\x80\x81 stray continuation',
        b'ends in partial \xf0\x9f\x98',
        b'\xfe\xfe\xff',
        b'mixed \xe4\xb8\x80\xff\xe4\xb8\x80',
    ]
    for l in lines:
        assert b'\n' not in l
    return lines


def encode_file(model, corpus):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model)
    with open(corpus, 'rb') as f:
        data = f.read()
    lines = data.split(b'\n')
    if lines and lines[-1] == b'':
        lines.pop()
    out = []
    for l in lines:
        ids = sp.encode(l)
        if sp.eos_id() >= 0:
            ids.append(sp.eos_id())
        out.append(' '.join(str(i) for i in ids))
    return '\n'.join(out) + '\n'


def write_tokenizer_json(model, path):
    """The HF tokenizer.json form of a model without a charsmap, laid out as
    transformers' SentencePiece converter writes it (Unigram vocab with scores,
    special added tokens, Metaspace)."""
    import json
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model)
    vocab = [[sp.id_to_piece(i), sp.get_score(i)] for i in range(sp.get_piece_size())]
    added = [dict(id=i, content=sp.id_to_piece(i), single_word=False, lstrip=False, rstrip=False,
                  normalized=False, special=True)
             for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)]
    tj = {
        'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': added,
        'normalizer': {'type': 'Sequence', 'normalizers': []},
        'pre_tokenizer': {'type': 'Metaspace', 'replacement': '\u2581', 'add_prefix_space': True,
                          'prepend_scheme': 'always'},
        'post_processor': None, 'decoder': None,
        'model': {'type': 'Unigram', 'unk_id': sp.unk_id(), 'vocab': vocab, 'byte_fallback': True},
    }
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)


CLEAN_CASES = [
    '', '   ', 'plain', '  lead and trail  ', 'a\t\tb\n\nc\r\nd', 'x\u3000y\u00a0z\u2003w\u200bv',
    'Tom &amp; Jerry', '&amp;amp; twice', '&amp;amp;amp; thrice', '&lt;b&gt;bold&lt;/b&gt;',
    '&quot;q&quot; &apos;a&apos; &nbsp;nb', '&#65;&#x42;&#X43;&#0067', '&#128512; &#x1F600;',
    '&#0; &#13; &#128; &#150; &#x9f; &#xD800; &#x110000; &#99999999999; &#1; &#x7f; &#xfffe;',
    '&amp &lt &gt &copy &notit; &notin &notin; &ampx &AMP &Amp;', '& alone &; &# &#x &#xg',
    '&thisisnotanentitybutlongerthanthirtytwocharacters; end', 'caf&eacute; na&iuml;ve &euro;5',
    '&NotNestedGreaterGreater; &acE; &fjlig;', 'a&#10;b&#9;c&#x3000;d', '\u00e9\u0301 keep \u2028 line',
    '\x1c\x1d\x1e\x1f sep \x85 nel', '&&amp;&', 'ends with &amp',
]


def clean_expected(t):
    import html
    import re
    t = html.unescape(html.unescape(t)).strip()
    return re.sub(r'\s+', ' ', t).strip()


def generate():
    import sentencepiece as spm
    os.makedirs(DATA, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        txt = os.path.join(tmp, 'train.txt')
        with open(txt, 'w', encoding='utf-8') as f:
            f.write(training_text())
        for name, opts in MODELS.items():
            prefix = os.path.join(tmp, name)
            args = dict(input=txt, model_prefix=prefix, model_type='unigram',
                        hard_vocab_limit=False, num_threads=2, minloglevel=2, seed_sentencepiece_size=50000)
            args.update(opts)
            spm.SentencePieceTrainer.Train(**args)
            shutil.copy(prefix + '.model', os.path.join(DATA, 'spm_%s.model' % name))
    corpus = os.path.join(DATA, 'corpus.txt')
    with open(corpus, 'wb') as f:
        f.write(b'\n'.join(corpus_lines()) + b'\n')
    for name in MODELS:
        model = os.path.join(DATA, 'spm_%s.model' % name)
        with open(os.path.join(DATA, 'spm_%s.ids' % name), 'w') as f:
            f.write(encode_file(model, corpus))
    import json
    with open(os.path.join(DATA, 'prompt_clean.json'), 'w', encoding='utf-8') as f:
        json.dump([[c, clean_expected(c)] for c in CLEAN_CASES], f, ensure_ascii=True, indent=0)
    write_tokenizer_json(os.path.join(DATA, 'spm_identity.model'),
                         os.path.join(DATA, 'spm_identity.json'))
    shutil.copy(os.path.join(DATA, 'spm_nfkc.model'),
                os.path.join(HERE, '..', 'data', 'tiny_spiece.model'))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == 'generate':
        generate()
    elif len(sys.argv) == 4 and sys.argv[1] == 'encode':
        sys.stdout.write(encode_file(sys.argv[2], sys.argv[3]))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
