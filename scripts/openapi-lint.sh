#!/usr/bin/env bash
# Lints omertad's OpenAPI document with Redocly CLI (recommended rules,
# every warning an error): writes it with scripts/openapi to out/openapi.json,
# installing the pinned @redocly/cli under .cache/npm first if it is not
# there. Needs node >= 20.19 and npm; the registry only on the first run.
#   scripts/openapi-lint.sh
set -euo pipefail

REDOCLY_VERSION=2.77.0
root=$(cd "$(dirname "$0")/.." && pwd)
prefix="$root/.cache/npm/redocly-$REDOCLY_VERSION"
redocly="$prefix/node_modules/.bin/redocly"
GO=${GO:-go}

if [ ! -x "$redocly" ]; then
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --no-save --cache "$root/.cache/npm/cache" \
    "@redocly/cli@$REDOCLY_VERSION" >&2
fi

doc="$root/out/openapi.json"
(cd "$root" && "$GO" run ./scripts/openapi -o "$doc")

# No telemetry and no update check: the lint must not call out.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
"$redocly" lint --config "$root/scripts/redocly.yaml" --format=stylish "$doc"
