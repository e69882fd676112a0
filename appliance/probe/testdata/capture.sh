#!/bin/sh
# capture.sh NAME: copy the /proc and /sys files that the probe reads on this
# machine into testdata/NAME/, so that a real machine becomes a fixture.
# Run it as root on the machine to capture, then `go test -run TestGolden -update`.
set -eu
name=${1:?usage: capture.sh NAME}
dst=$(dirname "$0")/$name
mkdir -p "$dst"
copy() {
	for f in "$@"; do
		[ -e "$f" ] || continue
		[ -d "$f" ] && continue
		mkdir -p "$dst$(dirname "$f")"
		# cat, not cp: sysfs files report a size of 4096 whatever they hold.
		cat "$f" >"$dst$f" 2>/dev/null || rm -f "$dst$f"
	done
}
copy /proc/cpuinfo /proc/meminfo /proc/cmdline /proc/version /proc/filesystems \
	/proc/mounts /proc/modules /proc/driver/nvidia/version \
	/proc/sys/kernel/osrelease /proc/sys/kernel/seccomp/actions_avail \
	/proc/sys/user/max_user_namespaces
for b in /sys/block/*; do
	copy "$b/size" "$b/removable" "$b/queue/rotational" "$b/device/model"
done
for n in /sys/class/net/*; do
	copy "$n/speed"
done
copy /sys/class/dmi/id/sys_vendor /sys/class/dmi/id/product_name /sys/hypervisor/type
copy /sys/class/tpm/tpm*/tpm_version_major /sys/class/tpm/tpm*/device/description
copy /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
[ -d /sys/firmware/efi ] && mkdir -p "$dst/sys/firmware/efi"
for g in /sys/kernel/iommu_groups/*; do
	[ -d "$g" ] && mkdir -p "$dst$g" && touch "$dst$g/.keep"
done
for d in /dev/nvidia*; do
	[ -e "$d" ] && mkdir -p "$dst/dev" && : >"$dst$d"
done
copy /etc/cdi/* /var/run/cdi/*
echo "captured into $dst"
