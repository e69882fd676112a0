#!/usr/bin/env bash
# make demo: run omertad with its state under ./demo, then show what it serves,
# what the probe thinks of this machine, and a first boot into a scratch root
# with its signed report verified. Stays up until Ctrl-C when run from a
# terminal; exits after the tour otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/omerta
demo=$PWD/demo
sock=$demo/run/omertad.sock
mkdir -p "$demo/run"

cat >"$demo/omerta.yaml" <<YAML
# Written by make demo: omertad with everything under $demo.
profile: user
daemon:
  socket: $sock
  state_dir: $demo/state
  log_level: info
YAML

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
api() { curl -sS --unix-socket "$sock" "http://omertad$1"; echo; }

say "starting omertad (log: demo/omertad.log)"
"$bin" daemon --config "$demo/omerta.yaml" >"$demo/omertad.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
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

say "omerta firstboot into a scratch root: demo/root"
rm -rf "$demo/root"; mkdir -p "$demo/root"
"$bin" firstboot --root "$demo/root" --profile pro
report=$demo/root/var/lib/omerta/firstboot/report.json
say "omerta report verify (with the device key printed at first boot)"
"$bin" report verify "$report" --pubkey "$demo/root/var/lib/omerta/keys/signing.pub"
"$bin" report html "$report" -o "$demo/report.html" --pubkey "$demo/root/var/lib/omerta/keys/signing.pub"
echo "HTML report: $demo/report.html"

say "omertad is running"
echo "  socket:  $sock"
echo "  try:     curl --unix-socket $sock http://omertad/api/v1/audit"
echo "  state:   $demo/state/state.db (sqlite3)"
if [ -t 0 ]; then
  echo "  Ctrl-C stops it."
  wait $pid
fi
