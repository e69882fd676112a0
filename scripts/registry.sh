#!/usr/bin/env bash
# scripts/registry.sh BIN DIR KEYDIR TRUSTDIR: makes DIR, which holds
# catalog/*.yaml (agents), agents/*.oci.tar (their images) and
# models/*.yaml (model manifests), a registry signed with KEYDIR's
# minisign key: REGISTRY.yaml lists every file, a model manifest whose
# download.url is a file in DIR gets integrity.sha256 of that file, BIN's
# `registry lock` pins each file's SHA-256 and each image's OCI digest,
# and the lock is signed and verified against TRUSTDIR, where the public
# key is put. The key is made once (unencrypted, minisign -W) and never
# leaves KEYDIR. make image (scripts/image.sh) and make demo use it.
set -euo pipefail
bin=$1 reg=$2 keydir=$3 trust=$4
name=omertaos-image

shopt -s nullglob
for m in "$reg"/models/*.yaml; do
	url=$(sed -n 's/^  url: *//p' "$m" | head -n 1)
	if [[ -n $url && $url != *:* && -f $reg/$url ]]; then
		printf 'integrity:\n  sha256: "%s"\n' "$(sha256sum "$reg/$url" | cut -d' ' -f1)" >>"$m"
	fi
done
{
	echo "# A registry written by scripts/registry.sh."
	echo 'registry_version: "1.0"'
	echo "catalog:"
	for list in catalog:agents agents:images models:models; do
		files=("$reg/${list%%:*}"/*.yaml "$reg/${list%%:*}"/*.oci.tar)
		((${#files[@]})) || continue
		echo "  ${list#*:}:"
		for f in "${files[@]}"; do echo "    - path: ${list%%:*}/$(basename "$f")"; done
	done
	echo "signing: {method: minisign, public_key: $name.pub}"
} >"$reg/REGISTRY.yaml"
if [[ ! -s $keydir/$name.key ]]; then
	mkdir -p -m 0700 "$keydir"
	minisign -G -W -f -c "OMERTAOS registry key of this checkout" -p "$keydir/$name.pub" -s "$keydir/$name.key" >/dev/null
fi
install -m 0644 "$keydir/$name.pub" "$reg/$name.pub"
install -D -m 0644 "$keydir/$name.pub" "$trust/$name.pub"
"$bin" registry lock "$reg"
"$bin" registry sign --key "$keydir/$name.key" --trust "$trust" "$reg"
"$bin" registry verify --trust "$trust" "$reg" >/dev/null
