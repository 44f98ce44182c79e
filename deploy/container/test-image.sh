#!/usr/bin/env bash
# Builds deploy/container/Containerfile with podman and checks the image:
# non-root (uid 10001), the three binaries and nothing else in
# /usr/local/bin, no model anywhere, the cloud refusing to start without a
# token or TLS,
# the fetch script filling a volume as the init container would, and a cloud
# (TLS, token) and an edge in two containers producing the same text as the
# edge alone.
#
# Not part of the default suite: the image build compiles the workspace in
# release mode from scratch (25-31 min with one job here). deploy/test.sh runs it
# when OURO_TEST_CONTAINER=1.
#
# Where no container registry is reachable (only package registries are, on
# the project's machines), the two base images are replaced by local
# substitutes of the same Debian release: a debootstrap of bookworm, and for
# the builder the same plus gcc and this machine's Rust toolchain. The
# Containerfile is used unchanged; only its RUST_IMAGE/RUNTIME_IMAGE
# arguments differ.
#
# usage: deploy/container/test-image.sh
# env:   OURO_RUST_IMAGE, OURO_RUNTIME_IMAGE (the bases to try first),
#        CARGO_BUILD_JOBS (default 1: the machine is shared), OURO_IMAGE_TAG
set -euo pipefail
cd "$(dirname "$0")/../.."

die() { echo "test-image: error: $*" >&2; exit 1; }
log() { echo "test-image: $*" >&2; }

rust_image="${OURO_RUST_IMAGE:-docker.io/library/rust:1.95-slim-bookworm}"
runtime_image="${OURO_RUNTIME_IMAGE:-docker.io/library/debian:bookworm-slim}"
tag="${OURO_IMAGE_TAG:-localhost/ouro:test}"
suite=bookworm
cache="${OURO_CONTAINER_CACHE:-$HOME/.cache/ouro/container}"

if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "needs podman, runc and debootstrap (Debian packages)"
  log "installing podman, runc, debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
# On these machines crun (podman's default) stops at "cgroups in hybrid mode
# not supported", and podman's default nofile/nproc limits are above what a
# process here may raise its own to ("setrlimit: Operation not permitted").
# runc and lower limits run.
RUN=(--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

host_ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$host_ca" ] || die "no CA bundle at $host_ca (Debian: ca-certificates)"
# Containers that fetch (pip in the image) trust what this machine trusts, for
# the same reason; the image itself keeps Debian's bundle.
CA=(-v "$host_ca:/etc/ssl/certs/ca-certificates.crt:ro")

have_image() { podman image exists "$1" || podman pull -q "$1" >/dev/null 2>&1; }

bootstrap() { # dir [include,...]
  local dir=$1 include=${2:-}
  [ -f "$dir/.complete" ] && return 0
  rm -rf "$dir"
  log "debootstrap $suite into $dir${include:+ (with $include)}"
  debootstrap --variant=minbase ${include:+--include="$include"} "$suite" "$dir" http://deb.debian.org/debian >/dev/null \
    || die "debootstrap failed"
  touch "$dir/.complete"
}

if ! have_image "$runtime_image"; then
  runtime_image="localhost/ouro-substitute/debian:$suite-slim"
  if ! podman image exists "$runtime_image"; then
    log "no registry: building $runtime_image"
    bootstrap "$cache/rootfs-runtime"
    tar -C "$cache/rootfs-runtime" --exclude=./.complete -c . | podman import -q - "$runtime_image" >/dev/null
  fi
fi
if ! have_image "$rust_image"; then
  sysroot="$(rustc --print sysroot)"
  version="$(rustc --version | cut -d' ' -f2)"
  rust_image="localhost/ouro-substitute/rust:$version-slim-$suite"
  if ! podman image exists "$rust_image"; then
    log "no registry: building $rust_image from $sysroot"
    bootstrap "$cache/rootfs-builder" gcc,libc6-dev,ca-certificates
    rm -rf "$cache/rootfs-builder/usr/local/rust"
    mkdir -p "$cache/rootfs-builder/usr/local/rust"
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$cache/rootfs-builder/usr/local/rust" -x
    # This machine's trust store: where registries are reached through a
    # TLS-inspecting proxy, its CA is only there (cargo fetches crates).
    cp "$host_ca" "$cache/rootfs-builder/etc/ssl/certs/ca-certificates.crt"
    tar -C "$cache/rootfs-builder" --exclude=./.complete -c . \
      | podman import -q --change "ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" - "$rust_image" >/dev/null
  fi
fi

log "building $tag (builder $rust_image, runtime $runtime_image)"
podman build "${RUN[@]}" --network=host \
  --build-arg RUST_IMAGE="$rust_image" --build-arg RUNTIME_IMAGE="$runtime_image" \
  --build-arg CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" \
  -f deploy/container/Containerfile -t "$tag" .

work="$(mktemp -d)"
cloud_name="ouro-test-cloud-$$"
trap 'podman rm -f "$cloud_name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
run() { podman run --rm "${RUN[@]}" "$@"; }
failures=0
check() { # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then log "ok: $what"; else log "FAIL: $what"; failures=$((failures + 1)); fi
}

uid="$(run "$tag" id -u)"
check "runs as uid 10001 (got $uid)" test "$uid" = 10001
bins="$(run "$tag" ls /usr/local/bin | tr '\n' ' ')"
check "/usr/local/bin holds the three binaries only (got: $bins)" test "$bins" = "ouro-bench ouro-cloud ouro-edge "
check "ouro-cloud, ouro-edge and ouro-bench start" \
  run "$tag" sh -c 'ouro-cloud --version && ouro-edge --version && ouro-bench --help >/dev/null'
models="$(run "$tag" sh -c 'find / -xdev \( -name "*.gguf" -o -name "*.safetensors" \) -print; ls -A /models')"
check "no model in the image (found: ${models:-nothing})" test -z "$models"
run "$tag" > "$work/cmd.out" 2>&1 && status=0 || status=$?
check "the default command refuses to serve without tokens (exit $status: $(tail -1 "$work/cmd.out"))" \
  grep -q "no bearer tokens configured" "$work/cmd.out"
run -e OURO_TOKENS=not-a-secret "$tag" > "$work/cmd.out" 2>&1 && status=0 || status=$?
check "and, given one, without TLS (exit $status: $(tail -1 "$work/cmd.out"))" \
  grep -q "TLS needs --tls-cert" "$work/cmd.out"

# The init container's job: fetch into an empty volume owned by the image's user.
mkdir -p "$work/models" "$work/secrets"
chown 10001:10001 "$work/models"
check "fetch-models.sh fills a volume as uid 10001 (pip from Debian, --target)" \
  run -v "$work/models:/models" "${CA[@]}" --network=host "$tag" /usr/local/share/ouro/fetch-models.sh smollm2-135m
sha="$(awk -F'\t' '$1 == "smollm2-135m" { print $7 }' deploy/models.tsv)"
check "the fetched model's sha256 is the pinned one" \
  sh -c "echo '$sha  $work/models/smollm2-135m.gguf' | sha256sum -c --quiet"

# A cloud with TLS and a token in one container, the edge in another.
# A CA and a server certificate it signs, as an issuer would hand out: the
# edge trusts the CA. (A certificate from a bare `openssl req -x509` carries
# CA:TRUE, and rustls refuses a CA certificate as the server's own.)
sec="$work/secrets"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=ouro-test-ca \
  -keyout "$sec/ca.key" -out "$sec/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$sec/key.pem" -out "$sec/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > "$sec/ext"
openssl x509 -req -in "$sec/server.csr" -CA "$sec/ca.pem" -CAkey "$sec/ca.key" -CAcreateserial -days 1 \
  -extfile "$sec/ext" -out "$sec/cert.pem" 2>/dev/null
rm -f "$sec/ca.key"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secrets/token"
chmod 0644 "$work/secrets/"*
podman run -d --name "$cloud_name" "${RUN[@]}" --network=host \
  -v "$work/models:/models:ro" -v "$work/secrets:/secrets:ro" "$tag" \
  ouro-cloud --threads 1 serve --model smollm2-135m --tls-cert /secrets/cert.pem --tls-key /secrets/key.pem \
  --tokens-file /secrets/token --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 >/dev/null
for _ in $(seq 1 600); do
  podman logs "$cloud_name" 2>/dev/null | grep -q '^{"ready":' && break
  [ "$(podman inspect -f '{{.State.Running}}' "$cloud_name")" = true ] || break
  sleep 0.5
done
addr="$(podman logs "$cloud_name" 2>/dev/null | sed -n 's/^{"ready":.*"listen":"\([^"]*\)".*/\1/p')"
check "the cloud serves TLS from the image (ready at ${addr:-nowhere})" test -n "$addr"
if [ -n "$addr" ]; then
  edge=(ouro-edge --threads 1 generate "Write a haiku about the sea." --model smollm2-135m --max-tokens 24)
  run --network=host -v "$work/models:/models:ro" -v "$work/secrets:/secrets:ro" "$tag" \
    "${edge[@]}" --cloud "$addr" --ca /secrets/ca.pem --token-file /secrets/token --fallback fail \
    > "$work/spec.out" 2> "$work/spec.err" || { cat "$work/spec.err" >&2; true; }
  run -v "$work/models:/models:ro" "$tag" "${edge[@]}" > "$work/local.out" 2> "$work/local.err" || cat "$work/local.err" >&2
  # --fallback fail and the summary's mode: the text came through the cloud,
  # not from the drafter alone after a failed connection.
  check "the edge, verified by the cloud over TLS, writes text ($(wc -c < "$work/spec.out") bytes; $(tail -1 "$work/spec.err"))" \
    sh -c "test -s '$work/spec.out' && grep -q '+ cloud: mode speculative,' '$work/spec.err'"
  check "and the same text as the same model alone" cmp -s "$work/spec.out" "$work/local.out"
fi

[ "$failures" = 0 ] || die "$failures check(s) failed"
log "all checks passed ($tag)"
