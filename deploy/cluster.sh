#!/usr/bin/env bash
# Several ouro-cloud replicas behind HAProxy on this machine: the local
# counterpart of deploy/k8s, with the same proxy configuration file
# (deploy/k8s/base/proxy/haproxy.cfg) and the same discovery (DNS SRV
# records, here from a dnsmasq on loopback instead of a headless Service).
#
# Each replica has its own gRPC, QUIC, health and metrics port, its own cores
# (taskset), and is restarted when it exits, as a Deployment would: SIGTERM
# one to see a drain and a restart, SIGKILL one to see a crash. The edge
# connects to the proxy's address. Everything listens on loopback, without
# TLS (development mode) unless --tls-dir gives certificates, in which case
# TLS runs as in deploy/k8s: terminated at the proxy, re-encrypted to the
# replicas.
# Ctrl-C or SIGTERM stops it all and removes its files.
#
# usage: deploy/cluster.sh [options] [-- extra `ouro-cloud serve` flags]
#   --replicas N          (OURO_REPLICAS, default 2)
#   --model NAME|PATH     (OURO_VERIFIER_MODEL, default smollm2-135m)
#   --tokens-file FILE    (OURO_TOKENS_FILE; default a fresh random token,
#                          its file named in the ready line)
#   --listen ADDR         the proxy (OURO_PROXY_LISTEN, default 127.0.0.1:7070)
#   --cores-per-replica K (OURO_CORES_PER_REPLICA, default 1): replica i runs
#                          on cores i*K .. i*K+K-1, modulo the machine's
#   --cloud-bin PATH      (OURO_CLOUD_BIN; default: build and use target/debug)
#   --tls-dir DIR         (OURO_CLUSTER_TLS_DIR) TLS everywhere: DIR/verifier.crt
#                          and verifier.key (the replicas', naming ouro-verifier),
#                          DIR/ca.crt (what the proxy checks them against),
#                          DIR/proxy.pem and proxy.pem.key (the proxy's, for edges)
#   --install-only        install HAProxy and dnsmasq if missing, then exit
#                          (exit 3 when they cannot be installed)
#
# Once everything is up it prints one JSON line on stdout (the contract;
# everything else goes to stderr):
#   {"ready":{"service":"ouro-cluster","listen":PROXY,"metrics":PROXY_STATS},
#    "cluster":{"dir":..,"token_file":..,"proxy_pid":..,"quic":"A,B",
#               "replicas":[{"listen":..,"metrics":..,"quic":..,"health":..,
#                            "cores":..,"pid_file":..}]}}
# `quic` lists the replicas' QUIC addresses: QUIC cannot pass an HTTP/2
# proxy, so QUIC clients get them all (`ouro-edge --transport quic --cloud
# A,B`) and pick one by their affinity key.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proxy_cfg="$here/k8s/base/proxy/haproxy.cfg"

replicas="${OURO_REPLICAS:-2}"
model="${OURO_VERIFIER_MODEL:-smollm2-135m}"
tokens_file="${OURO_TOKENS_FILE:-}"
listen="${OURO_PROXY_LISTEN:-127.0.0.1:7070}"
per="${OURO_CORES_PER_REPLICA:-1}"
cloud_bin="${OURO_CLOUD_BIN:-}"
tls_dir="${OURO_CLUSTER_TLS_DIR:-}"
install_only=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --replicas) replicas="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --tokens-file) tokens_file="$2"; shift 2 ;;
    --listen) listen="$2"; shift 2 ;;
    --cores-per-replica) per="$2"; shift 2 ;;
    --cloud-bin) cloud_bin="$2"; shift 2 ;;
    --tls-dir) tls_dir="$2"; shift 2 ;;
    --install-only) install_only=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$replicas" in ''|*[!0-9]*|0) echo "cluster.sh: --replicas must be a positive number, not '$replicas'" >&2; exit 2 ;; esac
case "$per" in ''|*[!0-9]*|0) echo "cluster.sh: --cores-per-replica must be a positive number, not '$per'" >&2; exit 2 ;; esac
case "$listen" in 127.*:*|localhost:*|\[::1\]:*) ;; *) echo "cluster.sh: --listen $listen: loopback only (the replicas are on loopback)" >&2; exit 2 ;; esac

# HAProxy and dnsmasq from Debian's packages. Concurrent callers (tests)
# take turns, and apt waits for a dpkg lock another process holds.
install() {
  command -v haproxy >/dev/null && command -v dnsmasq >/dev/null && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  (
    flock -w 600 9 || exit 1
    command -v haproxy >/dev/null && command -v dnsmasq >/dev/null && exit 0
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -y -q)
    $sudo "${apt[@]}" install haproxy dnsmasq-base >&2 \
      || { $sudo "${apt[@]}" update >&2 && $sudo "${apt[@]}" install haproxy dnsmasq-base >&2; }
  ) 9>/tmp/ouro-cluster-install.lock || true
  command -v haproxy >/dev/null && command -v dnsmasq >/dev/null
}
if ! install; then
  echo "cluster.sh: cannot install haproxy and dnsmasq-base (apt-get install haproxy dnsmasq-base)" >&2
  exit 3
fi
[ "$install_only" = 1 ] && exit 0

if [ -z "$cloud_bin" ]; then
  (cd "$here/.." && cargo build --quiet -p ouro-cloud >&2)
  cloud_bin="${CARGO_TARGET_DIR:-$here/../target}/debug/ouro-cloud"
fi
[ -x "$cloud_bin" ] || { echo "cluster.sh: $cloud_bin is not an executable" >&2; exit 2; }
case "$model" in */*|*.gguf) ;; *) "$here/fetch-models.sh" "$model" >&2 ;; esac

tls_flags=(--insecure-dev)
proxy_tls=()
if [ -n "$tls_dir" ]; then
  for f in verifier.crt verifier.key ca.crt proxy.pem proxy.pem.key; do
    [ -r "$tls_dir/$f" ] || { echo "cluster.sh: --tls-dir $tls_dir has no readable $f" >&2; exit 2; }
  done
  tls_dir="$(cd "$tls_dir" && pwd)"
  tls_flags=(--tls-cert "$tls_dir/verifier.crt" --tls-key "$tls_dir/verifier.key")
  proxy_tls=(OURO_PROXY_TLS_CERT="$tls_dir/proxy.pem" OURO_BACKEND_TLS_CA="$tls_dir/ca.crt" OURO_BACKEND_TLS_NAME=ouro-verifier)
fi

dir="$(mktemp -d -t ouro-cluster.XXXXXX)"
pids=()
cleanup() {
  trap - EXIT INT TERM
  touch "$dir/stopping"
  for f in "$dir"/replica-*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# Ports the kernel says are free for both TCP and UDP (QUIC and DNS are UDP).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
out, held = [], []
while len(out) < int(sys.argv[1]):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close(); continue
    held += [t, u]; out.append(port)
print(" ".join(map(str, out)))
EOF
}
read -r -a ports <<<"$(free_ports $((4 * replicas + 2)))"
dns_port="${ports[0]}"
stats_port="${ports[1]}"

if [ -z "$tokens_file" ]; then
  tokens_file="$dir/token"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tokens_file"
fi
cores="$(nproc)"

# One replica, restarted whenever it exits until the cluster stops.
run_replica() {
  local i="$1" port="$2" mport="$3" qport="$4" hport="$5" set="$6"
  while [ ! -e "$dir/stopping" ]; do
    taskset -c "$set" "$cloud_bin" --threads "$per" serve --model "$model" "${tls_flags[@]}" \
      --tokens-file "$tokens_file" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
      --quic-listen "127.0.0.1:$qport" --health-listen "127.0.0.1:$hport" "${extra[@]}" >"$dir/replica-$i.out" 2>>"$dir/replica-$i.log" &
    echo $! >"$dir/replica-$i.pid.new"
    mv "$dir/replica-$i.pid.new" "$dir/replica-$i.pid"
    # Started just as the cluster stops: cleanup may have read the old pid.
    [ -e "$dir/stopping" ] && kill $! 2>/dev/null
    local rc=0
    wait $! || rc=$?
    [ -e "$dir/stopping" ] && break
    echo "cluster.sh: replica $i exited ($rc); restarting it" >&2
    sleep 0.2
  done
}

dns_conf="$dir/dnsmasq.conf"
cat >"$dns_conf" <<EOF
port=$dns_port
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
no-negcache
local-ttl=1
EOF
srv="_grpc._tcp.verifiers.ouro.test"
json_replicas=""
quic_all=""
for ((i = 0; i < replicas; i++)); do
  port="${ports[2 + 4 * i]}"; mport="${ports[3 + 4 * i]}"; qport="${ports[4 + 4 * i]}"; hport="${ports[5 + 4 * i]}"
  first=$(((i * per) % cores)); last=$(((i * per + per - 1) % cores))
  set="$first"; [ "$per" -gt 1 ] && set="$first-$last"
  [ "$last" -lt "$first" ] && set="$first-$((cores - 1)),0-$last"
  run_replica "$i" "$port" "$mport" "$qport" "$hport" "$set" &
  pids+=($!)
  # CoreDNS gives each pod of a headless Service an equal SRV weight; so do we.
  echo "host-record=replica-$i.ouro.test,127.0.0.1" >>"$dns_conf"
  echo "srv-host=$srv,replica-$i.ouro.test,$port,0,100" >>"$dns_conf"
  json_replicas+="${json_replicas:+,}{\"listen\":\"127.0.0.1:$port\",\"metrics\":\"127.0.0.1:$mport\",\"quic\":\"127.0.0.1:$qport\",\"health\":\"127.0.0.1:$hport\",\"cores\":\"$set\",\"pid_file\":\"$dir/replica-$i.pid\"}"
  quic_all+="${quic_all:+,}127.0.0.1:$qport"
done

dnsmasq --conf-file="$dns_conf" --keep-in-foreground --pid-file= 2>"$dir/dnsmasq.log" &
pids+=($!)

for ((i = 0; i < replicas; i++)); do
  until grep -q '^{"ready":' "$dir/replica-$i.out" 2>/dev/null; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "cluster.sh: replica $i did not start:" >&2; cat "$dir/replica-$i.log" >&2; exit 1
    fi
    sleep 0.1
  done
done

env "${proxy_tls[@]}" OURO_PROXY_BIND="$listen" OURO_PROXY_STATS_BIND="127.0.0.1:$stats_port" OURO_VERIFIERS_SRV="$srv" \
  OURO_PROXY_SLOTS="$replicas" OURO_DNS_SERVER="127.0.0.1:$dns_port" OURO_PROXY_ADMIN_SOCKET="$dir/haproxy.sock" \
  haproxy -db -f "$proxy_cfg" 2>"$dir/haproxy.log" &
proxy_pid=$!
pids+=("$proxy_pid")

# Ready when the proxy has found every replica by DNS and checked it up.
up=0
for _ in $(seq 1 300); do
  kill -0 "$proxy_pid" 2>/dev/null || { echo "cluster.sh: haproxy exited:" >&2; cat "$dir/haproxy.log" >&2; exit 1; }
  up="$(python3 - "$dir/haproxy.sock" <<'EOF' 2>/dev/null || echo 0
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show servers state verifiers\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
rows = [l.split() for l in data.decode().splitlines() if l and l[0].isdigit() and len(l.split()) > 6]
print(sum(1 for r in rows if r[5] == "2"))
EOF
)"
  [ "$up" = "$replicas" ] && break
  sleep 0.1
done
if [ "$up" != "$replicas" ]; then
  echo "cluster.sh: the proxy sees $up of $replicas replicas up" >&2; cat "$dir/haproxy.log" >&2; exit 1
fi

security="plaintext"; [ -n "$tls_dir" ] && security="TLS"
echo "ouro cluster: $replicas replicas of $model behind HAProxy on $listen (gRPC, $security); QUIC direct: $quic_all" >&2
echo "{\"ready\":{\"service\":\"ouro-cluster\",\"listen\":\"$listen\",\"metrics\":\"127.0.0.1:$stats_port\"},\"cluster\":{\"dir\":\"$dir\",\"token_file\":\"$tokens_file\",\"proxy_pid\":$proxy_pid,\"quic\":\"$quic_all\",\"replicas\":[$json_replicas]}}"
wait "$proxy_pid"
