#!/usr/bin/env bash
# Rebuilds the drafter's FR-Spec ranking (deploy/vocab/qwen2.5-frspec-32k.txt)
# from non-benchmark text: general English word frequencies (the `wordfreq`
# package, pinned, installed from PyPI into a cached venv), and local files:
# Rust crate sources and docs in the cargo registry, Python's standard
# library, text docs in /usr/share/doc and English man pages. See
# deploy/vocab/README.md.
#
# usage: deploy/vocab/build-frspec.sh [OUT] [TOP]
#   OURO_MODEL_DIR     where the GGUF is (default ~/.cache/ouro/models)
#   FRSPEC_MAX_MB      bytes read per source, MB (default 24)
#   FRSPEC_WORK        scratch directory (default: a fresh mktemp -d, removed)
#   OURO_CACHE         where the wordfreq venv is kept (default ~/.cache/ouro)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here/qwen2.5-frspec-32k.txt}"
top="${2:-32768}"
model="${OURO_MODEL_DIR:-$HOME/.cache/ouro/models}/qwen2.5-coder-0.5b.gguf"
max_bytes=$(( ${FRSPEC_MAX_MB:-24} * 1000000 ))
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
python_lib="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
work="${FRSPEC_WORK:-$(mktemp -d)}"
[ -n "${FRSPEC_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/man"

[ -f "$model" ] || { echo "no $model: run deploy/fetch-models.sh qwen2.5-coder-0.5b" >&2; exit 1; }

# General English: the files below are all technical (code, manuals), and
# a chat drafter mostly writes prose. wordfreq's English list merges
# Wikipedia, subtitles, news, books, web text, Reddit and Twitter; it is
# case-folded, so each word is counted as " word" (75%), " Word" (20%) and
# "Word" (5%, a line's first word), a fixed split rather than one learnt
# from any benchmark.
wordfreq_version=3.1.1
venv="${OURO_CACHE:-$HOME/.cache/ouro}/venv-frspec"
if ! "$venv/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('wordfreq') != '$wordfreq_version')" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "wordfreq==$wordfreq_version"
fi
"$venv/bin/python" - "$work/english.tsv" <<'PY'
import sys, wordfreq
with open(sys.argv[1], "w", encoding="utf-8") as out:
    for word, f in sorted(wordfreq.get_frequency_dict("en").items(), key=lambda kv: (-kv[1], kv[0])):
        if "\t" in word or "\n" in word:
            continue
        title = word[:1].upper() + word[1:]
        for text, share in ((" " + word, 0.75), (" " + title, 0.20), (title, 0.05)):
            out.write(f"{f * share!r}\t{text}\n")
PY

# A file list in an order that depends only on the paths below their root
# (a hash of each), so a byte cap samples every crate or package alike
# rather than the first ones in alphabetical order.
spread() { # ROOT < paths
    python3 -c '
import hashlib, os, sys
root = sys.argv[1]
paths = [l.rstrip("\n") for l in sys.stdin if l.strip()]
key = lambda p: hashlib.sha256(os.path.relpath(p, root).encode()).hexdigest()
print("\n".join(sorted(paths, key=key)))' "$1"
}

# Legal boilerplate repeats one text thousands of times; it is not prose.
not_legal='/(LICEN[CS]E|COPYING|COPYRIGHT|copyright|NOTICE|AUTHORS)[^/]*$'

find "$registry" -type f -name '*.rs' -size -200k | spread "$registry" > "$work/rust.list"
find "$python_lib" -type f -name '*.py' -size -200k -not -path '*/test/*' -not -path '*/tests/*' \
    -not -path '*/site-packages/*' -not -path '*/dist-packages/*' | spread "$python_lib" > "$work/python.list"
{
    find "$registry" -type f \( -name '*.md' -o -name '*.txt' -o -name '*.rst' \) -size -200k
    find /usr/share/doc -type f \( -name '*.md' -o -name '*.txt' -o -name '*.rst' -o -name 'README*' \) -size -200k \
        -not -name '*.gz'
} | grep -Ev "$not_legal" | spread / > "$work/docs.list"

# English man pages (sections 1, 5, 7, 8) as plain text; gcloud's
# thousands of generated command pages are left out.
find /usr/share/man/man1 /usr/share/man/man5 /usr/share/man/man7 /usr/share/man/man8 -type f -name '*.gz' \
    -not -name 'gcloud*' | spread /usr/share/man > "$work/man-sources.list"
WORK_MAN="$work/man" xargs -a "$work/man-sources.list" -n 50 -P 2 bash -c 'for f in "$@"; do n="$(basename "$f" .gz)"; MANWIDTH=80 man -l "$f" 2>/dev/null | col -bx > "$WORK_MAN/$n.txt" || true; done' _
sed "s#.*/\(.*\)\.gz\$#$work/man/\1.txt#" "$work/man-sources.list" > "$work/man.list"

rust_crates=$(find "$registry" -mindepth 2 -maxdepth 2 -type d | wc -l)
python_version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cd "$root"
cargo run -q -p ouro-common --example frspec_rank -- \
    --gguf "$model" --top "$top" --out "$out" --max-bytes "$max_bytes" --threads 2 \
    --source "rust=$work/rust.list" \
    --source "python=$work/python.list" \
    --source "docs=$work/docs.list" \
    --source "man=$work/man.list" \
    --words "english=$work/english.tsv" --weight english=4 \
    --note "Sources: english = wordfreq $wordfreq_version's English frequencies (Wikipedia, subtitles, news, books, web, Reddit," \
    --note "Twitter; case-folded, so each word counts as ' word' 75%, ' Word' 20%, 'Word' 5%), weighing as much as the four" \
    --note "technical sources together; rust = *.rs of the $rust_crates crates in the cargo registry; python = Python $python_version's standard" \
    --note "library (*.py, tests left out); docs = *.md/*.txt/*.rst/README of those crates and /usr/share/doc, licences" \
    --note "left out; man = English man pages, sections 1/5/7/8 (gcloud's left out), rendered by man -l | col -bx." \
    --note "Each source read in the order of sha256(path below its root), up to $(( max_bytes / 1000000 )) MB." \
    --note "Command: deploy/vocab/build-frspec.sh (FRSPEC_MAX_MB=$(( max_bytes / 1000000 )), top $top)."
