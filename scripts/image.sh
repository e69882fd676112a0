#!/usr/bin/env bash
# Builds out/omertaos.raw (plus omertaos.raw.zst and SHA256SUMS) from
# mkosi.conf and bin/omerta. Package installation is cached by mkosi
# (Incremental=yes, .cache/mkosi-cache/), so a rebuild after a Go change only copies
# the binary and re-assembles the disk.
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top"

bin="${OMERTA_BIN:-bin/omerta}"
console_bin="${OMERTA_CONSOLE_BIN:-$(dirname "$bin")/omerta-console}"
for b in "$bin" "$console_bin"; do
	[[ -x $b ]] || { echo "image.sh: $b missing; run make build first" >&2; exit 1; }
done

start=$(date +%s.%N)

# The staging tree is the only place mkosi reads our binary from.
stage=.cache/image-stage
rm -rf "$stage"
install -D -m 0755 "$bin" "$stage/usr/bin/omerta"
install -D -m 0755 "$console_bin" "$stage/usr/bin/omerta-console"
# The shipped catalog, the sample agents' OCI archives and the model
# manifests: omertad imports the archives into containerd at start, so
# agents deploy with no network.
install -d -m 0755 "$stage/usr/share/omerta/catalog" "$stage/usr/share/omerta/agents" "$stage/usr/share/omerta/models"
install -m 0644 image/catalog/*.yaml "$stage/usr/share/omerta/catalog/"
install -m 0644 out/agents/*.oci.tar out/agents/index.json "$stage/usr/share/omerta/agents/"
install -m 0644 image/models/*.yaml "$stage/usr/share/omerta/models/"
# ... which make /usr/share/omerta the image's own registry
# (scripts/registry.sh): REGISTRY.yaml lists the catalog entries (kind
# agent), the archives (kind image) and the models, the lock pins each
# file's SHA-256 and each image's OCI digest, and it is signed with this
# checkout's minisign key. The key is made once under .cache/image-key and
# never enters the image; its public half is the image's one trusted key
# (/etc/omerta/trust) and out/omertaos-image.pub, for auditors. omertad
# admits a shipped agent's image as signed by it (the enterprise profile
# refuses unsigned images), enables the gateway's local-echo model only
# because its manifest is listed, and a changed file or lock fails both.
scripts/registry.sh "$bin" "$stage/usr/share/omerta" .cache/image-key "$stage/etc/omerta/trust"
mkdir -p out && cp .cache/image-key/omertaos-image.pub out/omertaos-image.pub
# The kernel command line comes from the hardening package, so that the
# image and hardening's command line checks cannot disagree.
mkdir -p "$stage/etc/kernel"
${GO:-go} run ./scripts/cmdline -profile "${OMERTA_CMDLINE_PROFILE:-pro}" >"$stage/etc/kernel/cmdline.tmp"
mv "$stage/etc/kernel/cmdline.tmp" "$stage/etc/kernel/cmdline"
echo "image.sh: kernel command line: $(cat "$stage/etc/kernel/cmdline")"

mkdir -p out .cache/mkosi-cache .cache/mkosi-out .cache/mkosi-build
# mkosi downloads the packages itself; a mirror hiccup must not fail CI, so
# the whole build is retried (cached packages are not fetched again).
for try in 1 2 3; do
	scripts/mkosi.sh --directory "$top" --force build && break
	[[ $try == 3 ]] && { echo "image.sh: mkosi failed 3 times" >&2; exit 1; }
	echo "image.sh: mkosi build failed (attempt $try); retrying in $((try * 20))s" >&2
	sleep $((try * 20))
done

raw=.cache/mkosi-out/omertaos.raw
[[ -f $raw ]] || { echo "image.sh: mkosi produced no $raw" >&2; exit 1; }
# The NVIDIA extension (image/mkosi.images/nvidia), also shipped inside the
# disk; out/ has a copy and its manifest for whoever wants to inspect it.
# The extension's build checks itself that no build package reached it;
# the base tree it is the difference against is checked here, as dpkg
# recorded it: no compiler, make, headers or DKMS in the image.
ext=.cache/mkosi-out/omerta-nvidia-tree/usr/lib/omerta/extensions
for f in omerta-nvidia.raw omerta-nvidia.json; do
	[[ -f $ext/$f ]] || { echo "image.sh: mkosi produced no $ext/$f" >&2; exit 1; }
done
[[ -s .cache/mkosi-out/base/var/lib/dpkg/status ]] || { echo "image.sh: the base tree has no dpkg status" >&2; exit 1; }
if build_pkgs=$(dpkg-query --admindir=.cache/mkosi-out/base/var/lib/dpkg -W -f='${Package}\n' 2>/dev/null |
	grep -Ex 'dkms|make|gcc(-[0-9]+)?|cpp(-[0-9]+)?|linux-headers-.*|linux-kbuild-.*|nvidia-.*-dkms'); then
	echo "image.sh: build packages in the image's package set: $build_pkgs" >&2
	exit 1
fi
cp "$ext/omerta-nvidia.raw" out/omerta-nvidia.raw.tmp && mv out/omerta-nvidia.raw.tmp out/omerta-nvidia.raw
cp "$ext/omerta-nvidia.json" out/omerta-nvidia.json
# Keep sparseness: the /var partition is mostly empty.
cp --sparse=always "$raw" out/omertaos.raw.tmp
mv out/omertaos.raw.tmp out/omertaos.raw
zstd -q -T0 -10 -f out/omertaos.raw -o out/omertaos.raw.zst
(cd out && sha256sum omertaos.raw omertaos.raw.zst omerta-nvidia.raw > SHA256SUMS)

end=$(date +%s.%N)
secs=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')
file_bytes=$(stat -c %s out/omertaos.raw)
used_bytes=$(( $(stat -c %b out/omertaos.raw) * $(stat -c %B out/omertaos.raw) ))
zst_bytes=$(stat -c %s out/omertaos.raw.zst)
nvidia_bytes=$(stat -c %s out/omerta-nvidia.raw)
cat > out/build-info.json <<JSON
{"build_seconds": $secs, "image_bytes": $file_bytes, "image_used_bytes": $used_bytes, "compressed_bytes": $zst_bytes, "nvidia_extension_bytes": $nvidia_bytes, "omerta": "$(sha256sum "$bin" | cut -d' ' -f1)", "omerta_console": "$(sha256sum "$console_bin" | cut -d' ' -f1)"}
JSON
echo "image.sh: built out/omertaos.raw in ${secs}s (file $file_bytes bytes, used $used_bytes bytes, zstd $zst_bytes bytes; NVIDIA extension $nvidia_bytes bytes)"
