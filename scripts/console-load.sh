#!/bin/sh
# The console's load benchmark (issue 10, "Speed"), as root:
#
#   scripts/console-load.sh
#
# 200 agents in omertad's database (deployed through its API; its
# container runtime is the agents service's fake, see ui/loadtest/doc.go),
# 50 concurrent signed-in clients over HTTPS on 127.0.0.1 against the
# dashboard and GET /api/v1/agents, each beside a bare Fiber handler over
# TLS serving a body of the same size (the floor), 60 s each, then
# omertad's own answer on its socket for comparison; p50/p95/p99, errors,
# the ratios to the floor and the console's RSS, checked against the
# issue's targets (the exit status says whether they were met).
#
# DURATION changes the 60 s (e.g. DURATION=10s); SPLIT=0 leaves out the
# omertad-only run; PPROF=FILE writes omertad's CPU profile; CONSOLE_ENV
# adds to the console's environment alone (e.g. CONSOLE_ENV=GOGC=50). The
# results go to standard output and to out/console-load.txt.
set -eu

cd "$(dirname "$0")/.."
GO=${GO:-go}
if [ "$(id -u)" != 0 ]; then
	echo "console-load: needs root (the console is dropped to nobody with setpriv)" >&2
	exit 2
fi
mkdir -p out
status=$(mktemp)
trap 'rm -f "$status"' EXIT
# The test's status, not tee's, is the script's; set -e would end the
# group at a failed test before it is written down.
{
	rc=0
	OMERTA_LOAD=1 OMERTA_LOAD_DURATION="${DURATION:-60s}" OMERTA_LOAD_SPLIT="${SPLIT:-1}" \
		OMERTA_LOAD_PPROF="${PPROF:-}" OMERTA_LOAD_CONSOLE_ENV="${CONSOLE_ENV:-}" \
		"$GO" test -count=1 -v -timeout 30m -run '^TestConsoleLoad$' ./ui/loadtest/ 2>&1 || rc=$?
	echo "$rc" >"$status"
} | tee out/console-load.txt
exit "$(cat "$status")"
