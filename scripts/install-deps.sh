#!/usr/bin/env bash
# Installs the Debian packages that building, testing or the demo need, only
# those missing, with retries on transient download errors. Idempotent.
#   scripts/install-deps.sh build|test|demo|browser
set -euo pipefail

what=${1:-test}
pkgs=(gcc libc6-dev make git ca-certificates curl)
case "$what" in
  build) ;;
  # containerd + runc: the demo deploys a sample agent on a private containerd.
  # minisign: the demo's registry is signed with a key it makes once.
  demo) pkgs+=(curl jq containerd runc minisign) ;;
  # containerd + runc: the probe's and later the agents' integration tests
  # start a private containerd. iproute2: network namespace tests.
  # nftables: the hardening ruleset is loaded into a real nft in a
  # namespace. jq: an auditor's re-implementation of the report hash.
  # mtools: writing a site configuration onto an ESP image without mounting.
  # busybox-static: the tiny image the runtime tests build and run.
  # runsc (gVisor): the agents' sandbox isolation; bookworm's own build is
  # from 2022, so on bookworm it comes from bookworm-backports (below).
  # docker-registry: the pull tests start one on loopback themselves (its
  # packaged service is not used). minisign: the registry signatures are
  # checked against the real tool both ways.
  test) pkgs+=(containerd runc runsc busybox-static iproute2 nftables sqlite3 mtools jq docker-registry minisign) ;;
  # The browser test: Debian's chromium, and node >= 20 with npm for
  # playwright-core (the machine images ship node 20; bookworm's is 18).
  browser) pkgs+=(chromium) ;;
  *) echo "usage: $0 build|test|demo|browser" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  target=()
  if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release && [[ " ${missing[*]} " == *" runsc "* ]]; then
    # Debian's keyring signs backports too; only runsc is taken from there.
    cat >/etc/apt/sources.list.d/omerta-bookworm-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    target=(runsc/bookworm-backports)
    missing=("${missing[@]/runsc}")
  fi
  for i in 1 2 3; do
    apt-get update -q && apt-get install -y -q --no-install-recommends ${missing[@]} "${target[@]}" && break
    [ "$i" = 3 ] && { echo "apt-get failed 3 times" >&2; exit 1; }
    echo "apt-get failed, retrying in $((i * 10))s" >&2; sleep $((i * 10))
  done
  # Debian enables the registry's own service on :5000; the tests start
  # theirs on a loopback port and want no other listening.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
  fi
fi

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  echo "note: Go is at /usr/local/go/bin; add it to PATH" >&2
elif ! command -v go >/dev/null; then
  echo "Go 1.26 is required (https://go.dev/doc/install); Debian 12's golang package is too old" >&2
  exit 1
fi
