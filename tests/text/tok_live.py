#!/usr/bin/python3
"""Live parity: re-encodes the corpus with the installed SentencePiece and
compares with `vdit tokenize`, so stale fixtures cannot hide a difference.
Skips (exit 77) when python3-sentencepiece is not installed.

    tok_live.py VDIT CORPUS MODEL...
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import sentencepiece  # noqa: F401
except ImportError:
    print('python3-sentencepiece not installed: skipped')
    sys.exit(77)
import make_spm  # noqa: E402


def main():
    vdit, corpus, models = sys.argv[1], sys.argv[2], sys.argv[3:]
    bad = 0
    for m in models:
        want = make_spm.encode_file(m, corpus).split('\n')
        with open(corpus, 'rb') as f:
            got = subprocess.run([vdit, 'tokenize', m], stdin=f, stdout=subprocess.PIPE,
                                 check=True).stdout.decode().split('\n')
        diff = [i for i in range(max(len(want), len(got)))
                if i >= len(want) or i >= len(got) or want[i] != got[i]]
        print('%s: %d lines, %d differ' % (os.path.basename(m), len(want) - 1, len(diff)))
        for i in diff[:3]:
            print('  line %d\n   spm : %s\n   vdit: %s' % (i + 1, want[i] if i < len(want) else '-',
                                                       got[i] if i < len(got) else '-'))
        bad += len(diff)
    return 1 if bad else 0


sys.exit(main())
