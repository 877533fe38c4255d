#!/bin/sh
# Usage: tok_parity.sh VDIT MODEL CORPUS EXPECTED
# Compares `vdit tokenize MODEL < CORPUS` with SentencePiece's stored ids,
# printing the first differing line.
set -u
out=$("$1" tokenize "$2" < "$3") || { echo "vdit tokenize failed"; exit 1; }
exp=$(cat "$4")
if [ "$out" = "$exp" ]; then
    echo "$(printf '%s\n' "$out" | wc -l) lines identical"
    exit 0
fi
printf '%s\n' "$out" > "${TMPDIR:-/tmp}/vdit_tok_got.$$"
diff "${TMPDIR:-/tmp}/vdit_tok_got.$$" "$4" | head -8
rm -f "${TMPDIR:-/tmp}/vdit_tok_got.$$"
exit 1
