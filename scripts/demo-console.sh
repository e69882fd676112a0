#!/usr/bin/env bash
# scripts/demo-console.sh SOCKET DIR: start the web console in the
# background in front of the omertad that serves SOCKET, with a development
# certificate kept in DIR, and print where it answers: the URL, the
# certificate's SHA-256 fingerprint (as first boot prints the device's) and,
# when OMERTA_SETUP_TOKEN_FILE names first boot's token file, the one-time
# setup token. The console's pid goes to DIR/console.pid (kill it to stop
# it), its log to DIR/console.log. It listens on $OMERTA_CONSOLE_LISTEN
# (default 127.0.0.1:8443). The console is bin/omerta-console
# ($OMERTA_CONSOLE_BIN; by default beside $OMERTA_BIN when that is set).
#
# The console never runs as root: started by root (make demo), it drops to
# nobody with setpriv, in the group that owns SOCKET. omertad's
# daemon.socket_group must name that group (the demo uses nogroup), or
# nobody cannot connect.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 SOCKET DIR" >&2; exit 2; }
sock=$1 dir=$2
bin_dir=$PWD/bin
if [ -n "${OMERTA_BIN:-}" ]; then bin_dir=$(dirname "$OMERTA_BIN"); fi
bin=${OMERTA_CONSOLE_BIN:-$bin_dir/omerta-console}
[ -x "$bin" ] || { echo "demo-console: $bin is missing; make build builds it" >&2; exit 1; }
listen=${OMERTA_CONSOLE_LISTEN:-127.0.0.1:8443}
mkdir -p "$dir"
chmod 0700 "$dir"
run=("$bin" --socket "$sock" --dev-cert "$dir/cert" --listen "$listen")
if [ "$(id -u)" = 0 ]; then
  group=$(stat -c %G "$sock")
  if [ "$group" = root ]; then
    echo "demo-console: $sock belongs to group root; set daemon.socket_group (e.g. nogroup) so the console can run unprivileged" >&2
    exit 1
  fi
  mkdir -p "$dir/cert"
  chown nobody:"$group" "$dir" "$dir/cert"
  run=(setpriv --reuid=nobody --regid="$group" --clear-groups --no-new-privs "${run[@]}")
fi
: >"$dir/console.log"
"${run[@]}" >"$dir/console.log" 2>&1 &
echo $! >"$dir/console.pid"
for _ in $(seq 100); do
  grep -q 'TLS fingerprint' "$dir/console.log" && break
  kill -0 "$(cat "$dir/console.pid")" 2>/dev/null || { cat "$dir/console.log" >&2; exit 1; }
  sleep 0.1
done
grep -E 'Console:|TLS fingerprint:' "$dir/console.log"
if [ -n "${OMERTA_SETUP_TOKEN_FILE:-}" ] && [ -r "$OMERTA_SETUP_TOKEN_FILE" ]; then
  printf '  Setup token:      %s\n' "$(jq -r '.token // "(used)"' "$OMERTA_SETUP_TOKEN_FILE")"
fi
