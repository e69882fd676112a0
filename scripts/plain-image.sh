#!/usr/bin/env bash
# Builds out/plain.raw, the baseline that `make e2e-bench` boots beside
# out/omertaos.raw: the same mkosi.conf (so the same kernel and the same
# package list), with none of ours. The overrides on the mkosi command line,
# which come after every value from mkosi.conf, are:
#
#   --extra-tree=              no image/mkosi.extra, no .cache/image-stage:
#                              no omerta binaries, units or configuration
#   --postinst-script=         no image/mkosi.postinst.chroot
#   --repart-directory=        mkosi's default disk, an ESP (512M, as ours)
#                              and one root with /var in it: our separate
#                              /var partition is mounted by our var.mount,
#                              and without it /var would be an empty
#                              directory on the root (auditd, for one, then
#                              fails and restarts through the boot)
#   --kernel-command-line=...  the console settings only, no hardening
#                              (there is no /etc/kernel/cmdline in the
#                              image, so this is the whole command line)
#   --image-id= --output= --output-directory=
#                              its own name and directory: omertaos.raw is
#                              never touched
#
# (an empty value empties a list setting: mkosi(1), "Settings that take a
# collection of values"). Package installation is cached under
# .cache/mkosi-cache with the same key as the main image (distribution,
# release, architecture and the package list), so in a checkout that has
# built the image this only re-assembles the disk (about a minute; the
# tools tree mkosi copies into the output directory takes 1.5 GB of it
# there). Root stays locked (no
# RootPassword); the bench reads the serial console and never logs in.
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top"

# The console part of scripts/cmdline's base settings: the serial console,
# and kernel messages at warning and above only, as on the image (else the
# plain boot alone pays for writing every kernel and audit message to the
# emulated serial port). Then what makes the console say when multi-user.target
# is reached: systemd's status lines whatever the default, and no getty on
# the serial console (systemd-getty-generator adds one for a serial
# /dev/console; once it runs, systemd prints no more status there, and
# getty.target comes before multi-user.target). Root is locked anyway.
cmdline="console=ttyS0,115200 loglevel=4 systemd.show_status=1 systemd.getty_auto=0"
outdir=.cache/mkosi-plain-out

start=$(date +%s.%N)
mkdir -p out .cache/mkosi-cache "$outdir"
for try in 1 2 3; do
	scripts/mkosi.sh --directory "$top" \
		--extra-tree= --postinst-script= --repart-directory= \
		--kernel-command-line="$cmdline" \
		--image-id=plain --output=plain --output-directory="$outdir" \
		--force build && break
	[[ $try == 3 ]] && { echo "plain-image.sh: mkosi failed 3 times" >&2; exit 1; }
	echo "plain-image.sh: mkosi build failed (attempt $try); retrying in $((try * 20))s" >&2
	sleep $((try * 20))
done
raw=$outdir/plain.raw
[[ -f $raw ]] || { echo "plain-image.sh: mkosi produced no $raw" >&2; exit 1; }
cp --sparse=always "$raw" out/plain.raw.tmp
mv out/plain.raw.tmp out/plain.raw
end=$(date +%s.%N)
echo "plain-image.sh: built out/plain.raw in $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')s (kernel command line: $cmdline)"
