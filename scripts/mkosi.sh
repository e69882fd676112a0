#!/usr/bin/env bash
# Runs mkosi 25.3 from Debian trixie without installing it on the host.
#
# Debian bookworm's mkosi 14 cannot build a bootable disk on machines whose
# kernel has no vfat to mount, so we fetch trixie's package through apt with a
# private sources list and private state/cache directories (signature-checked
# against debian-archive-keyring; the system's apt configuration is never
# touched), unpack it under .cache/mkosi and run it with the system Python.
#
# Usage: scripts/mkosi.sh [mkosi arguments...]
set -euo pipefail

MKOSI_VERSION="${MKOSI_VERSION:-25.3}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

top="$(cd "$(dirname "$0")/.." && pwd)"
cache="${MKOSI_CACHE_DIR:-$top/.cache/mkosi}"
root="$cache/root-$MKOSI_VERSION"
python="${PYTHON:-/usr/bin/python3}"

# retry N CMD...: transient mirror errors must not fail a build.
retry() {
	local n="$1" i=1
	shift
	until "$@"; do
		if ((i >= n)); then
			echo "mkosi.sh: giving up after $n attempts: $*" >&2
			return 1
		fi
		echo "mkosi.sh: attempt $i of $* failed; retrying in $((i * 5))s" >&2
		sleep $((i * 5))
		i=$((i + 1))
	done
}

fetch() {
	if [[ ! -r $KEYRING ]]; then
		echo "mkosi.sh: $KEYRING missing; install debian-archive-keyring" >&2
		exit 1
	fi
	local apt="$cache/apt"
	mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/state/lists/partial" \
		"$apt/cache/archives/partial" "$cache/debs"
	cat >"$apt/etc/sources.list" <<SRC
deb [signed-by=$KEYRING] $MIRROR trixie main
SRC
	local opts=(
		-o "Dir::Etc::SourceList=$apt/etc/sources.list"
		-o "Dir::Etc::SourceParts=$apt/etc/sources.list.d"
		-o "Dir::Etc::Preferences=$apt/etc/preferences"
		-o "Dir::Etc::PreferencesParts=$apt/etc/preferences.d"
		-o "Dir::State=$apt/state"
		-o "Dir::State::status=$apt/state/status"
		-o "Dir::Cache=$apt/cache"
		-o "APT::Architecture=amd64"
		-o "Debug::NoLocking=1"
		-o "APT::Sandbox::User=root"
	)
	touch "$apt/state/status"
	retry 5 apt-get "${opts[@]}" -q update
	local want
	want="$(apt-cache "${opts[@]}" madison mkosi | awk -v v="$MKOSI_VERSION" '$3 ~ "^"v"(-|$)" {print $3; exit}')"
	if [[ -z $want ]]; then
		echo "mkosi.sh: mkosi $MKOSI_VERSION is not in trixie; found: $(apt-cache "${opts[@]}" madison mkosi | awk '{print $3}' | tr '\n' ' ')" >&2
		exit 1
	fi
	# apt-get download verifies the package's hash against the signed Release file.
	(cd "$cache/debs" && retry 5 apt-get "${opts[@]}" -q download "mkosi=$want")
	local deb
	deb="$(ls "$cache/debs"/mkosi_"${want//:/%3a}"_*.deb)"
	rm -rf "$root.tmp"
	dpkg-deb -x "$deb" "$root.tmp"
	mv "$root.tmp" "$root"
}

if [[ ! -e $root/usr/lib/python3/dist-packages/mkosi/__init__.py ]]; then
	fetch
fi

export PYTHONPATH="$root/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -B -m mkosi "$@"
