#!/usr/bin/env bash
# A Python virtual environment with the official `openai` client, pinned
# (tests/openai/requirements.txt), for the end-to-end client test
# (tests/openai/test_client.py). Created once in the cache, outside the repo,
# and reused while the pins are unchanged; rebuilt when they change or when
# an earlier install was interrupted.
#
# usage: deploy/openai-env.sh        -> prints the venv's python path on stdout
# env:   OURO_CACHE (default ~/.cache/ouro); the venv is $OURO_CACHE/venv-openai
#
# Needs python3 with its venv module; on Debian without it (python3-venv),
# installs it with apt-get when run as root.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REQUIREMENTS="$ROOT/tests/openai/requirements.txt"
CACHE="${OURO_CACHE:-$HOME/.cache/ouro}"
VENV="$CACHE/venv-openai"
PY="$VENV/bin/python"
# Written last: a venv without it (an interrupted install) is rebuilt.
STAMP="$VENV/.ouro-requirements.sha256"

log() { echo "openai-env: $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v python3 >/dev/null 2>&1 || die "python3 is missing: install it (Debian: apt-get install python3 python3-venv)"
[ -f "$REQUIREMENTS" ] || die "missing $REQUIREMENTS"
want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"

ready() { [ -x "$PY" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] && "$PY" -c "import openai" >/dev/null 2>&1; }

mkdir -p "$CACHE"
# Tests may call this concurrently: one builds, the others wait and reuse.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/venv-openai.lock"
  flock 9
fi

if ready; then
  echo "$PY"
  exit 0
fi

has_venv() { python3 -c "import venv, ensurepip" >/dev/null 2>&1; }
if ! has_venv; then
  # Debian ships venv's ensurepip separately.
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing python3-venv"
    apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 || die "could not install python3-venv"
    has_venv || die "python3's venv module is still missing after installing python3-venv"
  else
    die "python3's venv module is missing: install python3-venv (as root: apt-get install python3-venv)"
  fi
fi

log "creating $VENV ($(python3 --version 2>&1))"
rm -rf "$VENV"
python3 -m venv "$VENV" >&2 || die "python3 -m venv $VENV failed"
log "installing the pinned openai client"
"$PY" -m pip install --quiet --disable-pip-version-check --no-input --require-virtualenv -r "$REQUIREMENTS" >&2 \
  || die "pip install -r $REQUIREMENTS failed (is PyPI reachable?)"
"$PY" -c "import openai" >/dev/null 2>&1 || die "openai does not import after the install"
echo "$want" >"$STAMP"
log "ready: openai $("$PY" -c 'import openai; print(openai.__version__)')"
echo "$PY"
