#!/bin/sh
# The agents' speed and footprint benchmarks (issue 9), side by side against
# the ctr CLI on one private containerd, as root:
#
#   scripts/bench-agents.sh            the comparisons: Deploy vs ctr run,
#                                      a task vs ctr task exec (10 rounds)
#   scripts/bench-agents.sh footprint  the comparisons, then omertad with
#                                      50 agents (about two minutes more)
#
# The results go to standard output and to out/bench-agents.txt. ROUNDS
# changes the number of rounds of the comparisons (default 10).
set -eu

cd "$(dirname "$0")/.."
GO=${GO:-go}
ROUNDS=${ROUNDS:-10}
case "$ROUNDS" in
'' | *[!0-9]*) echo "bench-agents: ROUNDS=$ROUNDS is not a number" >&2; exit 2 ;;
esac
case "${1:-}" in
'' | footprint) ;;
*) echo "usage: $0 [footprint]" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "bench-agents: needs root (a private containerd, runc, runsc)" >&2
	exit 2
fi

mkdir -p out
log=out/bench-agents.txt
: >"$log"
status=$(mktemp)
trap 'rm -f "$status"' EXIT
# run shows and logs a command and its output, and fails as it does (sh
# has no pipefail: the status goes through a file).
run() {
	echo "\$ $*" | tee -a "$log"
	{ "$@" 2>&1; echo $? >"$status"; } | tee -a "$log"
	return "$(cat "$status")"
}

run "$GO" test -count=1 -run '^$' -bench 'DeployVsCtrRun|TaskVsCtrExec' -benchtime "${ROUNDS}x" -timeout 10m ./appliance/agents/
if [ "${1:-}" = footprint ]; then
	run env OMERTA_BENCH_FOOTPRINT=1 "$GO" test -count=1 -run '^$' -bench Footprint -benchtime 1x -timeout 20m ./appliance/agents/
fi
