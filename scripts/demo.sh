#!/usr/bin/env bash
# make demo: run omertad with its state under ./demo and a private containerd,
# then show what it serves, what the probe thinks of this machine, the sample
# agents imported from their OCI archives (no registry, no network), one of
# them deployed with its logs and a task's result, and a first boot into a
# scratch root with its signed report verified. Stays up until Ctrl-C when run
# from a terminal; exits after the tour otherwise, removing what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/omerta
demo=$PWD/demo
sock=$demo/run/omertad.sock
mkdir -p "$demo/run"

# A private containerd, so the demo never touches the system's: its own
# root, state and socket (a short path: unix sockets take 107 bytes).
ctrd=$(mktemp -d /tmp/omerta-demo-ctrd.XXXXXX)
trap 'rm -rf "$ctrd"' EXIT
# Each demo starts from scratch: a new first boot, so a new setup token,
# and a state database (with its audit-chain anchor) that has no admin yet.
rm -rf "$demo/state" "$demo/console"
cat >"$ctrd/config.toml" <<TOML
version = 2
root = "$ctrd/root"
state = "$ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ctrd/c.sock"
[ttrpc]
  address = "$ctrd/c.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$ctrd/opt"
TOML

# The demo's catalog: the shipped entries, and a gateway-mode client made
# of the echo-model image (scripts/gateway-client.yaml), whose task posts
# its input to the model gateway.
rm -rf "$demo/catalog"; mkdir -p "$demo/catalog"
cp image/catalog/*.yaml scripts/gateway-client.yaml "$demo/catalog/"
# ... and a registry signed as the image's is (scripts/registry.sh, this
# checkout's key under .cache/image-key): the catalog, the archives and the
# local-echo model's manifest. omertad verifies deploys and imports against
# it, and enables the gateway's local-echo model only because it lists it.
rm -rf "$demo/registry" "$demo/trust"; mkdir -p "$demo/registry/catalog" "$demo/registry/agents" "$demo/registry/models"
cp "$demo"/catalog/*.yaml "$demo/registry/catalog/"
cp out/agents/*.oci.tar out/agents/index.json "$demo/registry/agents/"
cp image/models/*.yaml "$demo/registry/models/"
scripts/registry.sh "$bin" "$demo/registry" .cache/image-key "$demo/trust"

cat >"$demo/omerta.yaml" <<YAML
# Written by make demo: omertad with everything under $demo.
profile: user
daemon:
  socket: $sock
  # The console runs as nobody in this group (scripts/demo-console.sh).
  socket_group: nogroup
  state_dir: $demo/state
  log_level: info
agents:
  containerd: $ctrd/c.sock
  namespace: omerta-demo
  catalog_dir: $demo/catalog
  bundled_dir: $PWD/out/agents
  log_dir: $demo/agents/logs
  run_dir: $demo/agents/run
  runtime_root: $ctrd/runc
  registries: [$demo/registry]
  trust_dir: $demo/trust
# The agents' network (bridge omerta0, 10.88.0.0/24, nftables tables
# omerta_agents) and the model gateway on 10.88.0.1:8080, routing
# local-echo to the echo-model agent.
gateway:
  enabled: true
  backends:
    - {name: echo, agent: local-echo-model, port: 8080, models: [local-echo]}
YAML

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
api() { curl -sS --unix-socket "$sock" "http://omertad$1"; echo; }

cli() { "$bin" "$@" --socket "$sock"; }

say "omerta firstboot into a scratch root: demo/root (its token and report serve the console)"
rm -rf "$demo/root"; mkdir -p "$demo/root"
"$bin" firstboot --root "$demo/root" --profile pro
report=$demo/root/var/lib/omerta/firstboot/report.json
say "omerta report verify (with the device key printed at first boot)"
"$bin" report verify "$report" --pubkey "$demo/root/var/lib/omerta/keys/signing.pub"
"$bin" report html "$report" -o "$demo/report.html" --pubkey "$demo/root/var/lib/omerta/keys/signing.pub"
echo "HTML report: $demo/report.html"

say "starting a private containerd (log: demo/containerd.log)"
containerd --config "$ctrd/config.toml" >"$demo/containerd.log" 2>&1 &
ctrd_pid=$!
for _ in $(seq 100); do [ -S "$ctrd/c.sock" ] && break; sleep 0.1; done
echo "containerd pid $ctrd_pid, socket $ctrd/c.sock"

say "starting omertad (log: demo/omertad.log)"
"$bin" daemon --config "$demo/omerta.yaml" --firstboot-root "$demo/root" >"$demo/omertad.log" 2>&1 &
pid=$!
cleanup() {
  # Agents first (their shims outlive containerd), then omertad, then
  # containerd and its directory.
  for a in sample-tool gateway-client local-echo-model; do
    "$bin" agents delete "$a" --purge --socket "$sock" >/dev/null 2>&1 || true
  done
  [ -f "$demo/console/console.pid" ] && kill -TERM "$(cat "$demo/console/console.pid")" 2>/dev/null || true
  kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true
  kill -TERM $ctrd_pid 2>/dev/null; wait $ctrd_pid 2>/dev/null || true
  rm -rf "$ctrd"
  # The agents' network outlives omertad by design (agents keep it across
  # restarts); the demo removes it.
  if command -v nft >/dev/null; then
    nft delete table inet omerta_agents 2>/dev/null || true
    nft delete table bridge omerta_agents 2>/dev/null || true
  fi
  ip link show omerta0 >/dev/null 2>&1 && ip link delete omerta0 2>/dev/null || true
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^omv/ {sub(/@.*/, "", $2); print $2}'); do
    ip link delete "$l" 2>/dev/null || true
  done
}
trap cleanup EXIT
for _ in $(seq 50); do [ -S "$sock" ] && curl -sf --unix-socket "$sock" http://omertad/healthz >/dev/null && break; sleep 0.1; done
echo "omertad pid $pid, API on unix socket $sock (mode 0660)"

say "GET /healthz";         api /healthz
say "GET /api/v1/version";  api /api/v1/version
say "GET /api/v1/whoami (SO_PEERCRED)"; api /api/v1/whoami
say "GET /api/v1/audit (hash-chained)"; api '/api/v1/audit?limit=5'

say "omerta probe (this machine, profile user)"
"$bin" probe --profile user || true
say "omerta probe --profile pro (needs a GPU)"
"$bin" probe --profile pro || true

say "omerta image list (imported at start from out/agents, digests checked)"
for _ in $(seq 100); do cli image list 2>/dev/null | grep -q agents/tool && break; sleep 0.2; done
cli image list
say "omerta catalog list"
cli catalog list
say "omerta agents deploy sample-tool"
cli agents deploy sample-tool
for _ in $(seq 100); do
  state=$(cli agents get sample-tool --json | jq -r .status.state)
  [ "$state" = running ] && break; sleep 0.2
done
cli agents list
say "omerta agents task sample-tool (JSON in, JSON out)"
echo '{"op":"extract","text":"Mail ops@example.com about the 2026-12-01 release, see https://example.com/notes"}' |
  cli agents task sample-tool --input - --json | jq .
say "omerta agents logs sample-tool"
cli agents logs sample-tool --tail 5


# The model gateway: the echo model as a gateway-mode agent, a client
# agent on the agents' network (it reaches the gateway and nothing else),
# one chat completion through the gateway and its usage record. A failure
# here is explained and the tour goes on.
gateway_demo() {
  say "omerta agents deploy local-echo-model (the local model backend, network mode gateway)"
  cli agents deploy local-echo-model || return 1
  say "omerta agents deploy gateway-client (network mode gateway: the gateway and the resolver only)"
  cli agents deploy gateway-client || return 1
  for a in local-echo-model gateway-client; do
    for _ in $(seq 100); do
      [ "$(cli agents get "$a" --json | jq -r .status.state)" = running ] && break; sleep 0.2
    done
  done
  say "GET /api/v1/models (each routed model enabled only once its manifest verified)"
  api /api/v1/models | jq -c '.models[] | {name, enabled, code, signed, key_id}'
  say "omerta agents task gateway-client: POST /v1/chat/completions through the gateway (no key: known by its address)"
  echo '{"model":"local-echo","messages":[{"role":"user","content":"hello from an agent in gateway mode"}]}' |
    cli agents task gateway-client --input - || return 1
  say "the usage record (gateway_usage in demo/state/state.db, and /metrics)"
  if command -v sqlite3 >/dev/null; then
    for _ in $(seq 30); do
      row=$(sqlite3 -header -column "$demo/state/state.db" \
        "SELECT agent_id, model, backend, status, prompt_tokens, completion_tokens, latency_us FROM gateway_usage ORDER BY id DESC LIMIT 1")
      [ -n "$row" ] && break; sleep 0.2
    done
    echo "$row"
  fi
  api /metrics | grep -E '^omerta_gateway_(requests|tokens)_total' || true
}
if ! gateway_demo; then
  echo "  the model gateway part did not run; omertad says why:"
  grep -E 'agents.network|gateway' "$demo/omertad.log" | tail -5 || true
fi

say "the web console (log: demo/console/console.log)"
OMERTA_BIN=$bin OMERTA_SETUP_TOKEN_FILE=$demo/root/var/lib/omerta/setup-token scripts/demo-console.sh "$sock" "$demo/console"
echo "  Open the console URL, compare the fingerprint, enter the setup token,"
echo "  create the first admin, then deploy an agent from the catalog."

say "omertad is running"
echo "  socket:  $sock"
echo "  try:     curl --unix-socket $sock http://omertad/api/v1/audit"
echo "  state:   $demo/state/state.db (sqlite3)"
echo "  agents:  $bin agents list --socket $sock"
if [ -t 0 ]; then
  echo "  Ctrl-C stops it."
  wait $pid
fi
