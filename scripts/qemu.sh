#!/usr/bin/env bash
# Boots an OMERTAOS disk image under QEMU with UEFI (OVMF) and the serial
# console on this terminal (or on stdout with --headless, for the e2e test).
#
#   scripts/qemu.sh [--disk FILE] [--headless] [--ssh-port N] [--https-port N]
#                   [--memory MiB] [--cpus N] [--qmp SOCKET]
#                   [--cmdline-extra 'PARAM ...']
#
# --cmdline-extra adds kernel parameters to the unified kernel image's own
# command line for this boot, through SMBIOS (systemd-stub's
# io.systemd.stub.kernel-cmdline-extra, honoured only without Secure Boot,
# as OVMF_CODE_4M.fd boots): a person debugging a boot, or make e2e-bench
# masking a unit, without rebuilding the image.
# --qmp opens a QMP control socket (the e2e test presses the power button
# through it: an ACPI shutdown of a guest that has no SSH).
#
# Networking is QEMU user-mode; the only ways in are forwards bound to
# 127.0.0.1 (SSH 2222->22, HTTPS 8443->443 by default). KVM is used only when
# it has been seen to boot OVMF on this host (the result is cached); otherwise
# TCG with -cpu max. Each run gets a fresh copy of the OVMF variable store.
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"

disk="$top/out/omertaos.raw"
headless=0
qmp=""
cmdline_extra=""
ssh_port="${QEMU_SSH_PORT:-2222}"
https_port="${QEMU_HTTPS_PORT:-8443}"
memory="${QEMU_MEMORY:-2048}"
cpus="${QEMU_CPUS:-}"
ovmf_code="${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}"
ovmf_vars="${OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}"

while (($#)); do
	case "$1" in
	--disk) disk="$2"; shift 2 ;;
	--headless) headless=1; shift ;;
	--ssh-port) ssh_port="$2"; shift 2 ;;
	--https-port) https_port="$2"; shift 2 ;;
	--memory) memory="$2"; shift 2 ;;
	--cpus) cpus="$2"; shift 2 ;;
	--qmp) qmp="$2"; shift 2 ;;
	--cmdline-extra) cmdline_extra="$2"; shift 2 ;;
	*) echo "qemu.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

for f in "$disk" "$ovmf_code" "$ovmf_vars"; do
	[[ -r $f ]] || { echo "qemu.sh: $f: not readable" >&2; exit 1; }
done

# kvm_works boots OVMF without a disk under KVM and watches for the firmware
# drawing on the serial console. On some hosts /dev/kvm exists but QEMU aborts
# setting MSRs, or the guest faults inside OVMF; only trying tells.
kvm_works() {
	[[ -w /dev/kvm ]] || return 1
	local d rc=1 pid i
	d="$(mktemp -d)"
	cp "$ovmf_vars" "$d/vars.fd"
	qemu-system-x86_64 -machine q35,accel=kvm -cpu host -m 256 -display none -net none \
		-drive "if=pflash,format=raw,readonly=on,file=$ovmf_code" \
		-drive "if=pflash,format=raw,file=$d/vars.fd" \
		-serial "file:$d/serial" -monitor none >"$d/qemu.log" 2>&1 &
	pid=$!
	for ((i = 0; i < 20; i++)); do
		sleep 1
		kill -0 "$pid" 2>/dev/null || break
		if grep -q $'\e\[' "$d/serial" 2>/dev/null && ! grep -q 'Code=' "$d/qemu.log"; then
			rc=0
			break
		fi
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -rf "$d"
	return $rc
}

accel="${QEMU_ACCEL:-}"
if [[ -z $accel ]]; then
	cache="$top/.cache/qemu-accel"
	key="$(uname -r) $(qemu-system-x86_64 --version | head -1)"
	if [[ -f $cache && "$(head -1 "$cache")" == "$key" ]]; then
		accel="$(sed -n 2p "$cache")"
	else
		if kvm_works; then accel=kvm; else accel=tcg; fi
		mkdir -p "$(dirname "$cache")"
		printf '%s\n%s\n' "$key" "$accel" >"$cache"
	fi
fi
# Under TCG one vCPU: with several, QEMU 7.2's multi-threaded TCG now and
# then lets a vCPU run into the int3 another is patching in (the kernel's
# text_poke_bp), and the guest panics in early boot. One vCPU also leaves
# the host's other core to the build.
#
# Under TCG the CPU is "max" without ERMS. With ERMS advertised the kernel
# clears pages with rep stosb, which QEMU 7.2's TCG runs one byte per
# iteration, and init_on_free=1 clears every page the kernel frees: the
# switch to the real root took 35.5 s with ERMS and 12.3 s without (the
# figures, and what dropping REP_GOOD or FSRM did, are beside init_on_free
# in hardening/cmdline.go). On hardware ERMS is the fast way to clear a
# page, so without it the emulated boot is nearer to a real one, not
# further; the image and its command line are the same.
# scripts/cmdlinebench boots the same CPU (its test checks this line).
case "$accel" in
kvm) cpu=host; cpus="${cpus:-2}" ;;
tcg) cpu=max,-erms; cpus="${cpus:-1}" ;;
*) echo "qemu.sh: QEMU_ACCEL must be kvm or tcg" >&2; exit 2 ;;
esac

vars="$(mktemp --tmpdir omertaos-vars.XXXXXX.fd)"
trap 'rm -f "$vars"' EXIT
cp "$ovmf_vars" "$vars"

args=(
	-machine "q35,accel=$accel" -cpu "$cpu" -smp "$cpus" -m "$memory"
	-drive "if=pflash,format=raw,readonly=on,file=$ovmf_code"
	-drive "if=pflash,format=raw,file=$vars"
	-drive "if=virtio,format=raw,file=$disk,cache=writeback,discard=unmap"
	-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:${ssh_port}-:22,hostfwd=tcp:127.0.0.1:${https_port}-:443"
	-device virtio-net-pci,netdev=n0,romfile=
	-device virtio-rng-pci
)
if [[ -n $qmp ]]; then
	args+=(-qmp "unix:$qmp,server=on,wait=off")
fi
if [[ -n $cmdline_extra ]]; then
	# One line of printable ASCII: the stub appends it verbatim. QEMU's
	# option syntax doubles a comma inside a value.
	if [[ $cmdline_extra =~ [^\ -~] ]]; then
		echo "qemu.sh: --cmdline-extra: only printable ASCII, one line" >&2
		exit 2
	fi
	args+=(-smbios "type=11,value=io.systemd.stub.kernel-cmdline-extra=${cmdline_extra//,/,,}")
fi
if ((headless)); then
	args+=(-display none -monitor none -serial stdio)
else
	echo "qemu.sh: booting $disk ($accel); quit with Ctrl-A X; SSH on 127.0.0.1:$ssh_port, console on https://127.0.0.1:$https_port/" >&2
	args+=(-nographic -serial mon:stdio)
fi
# Not exec: the trap removes the variable store when QEMU exits. Signals to
# this script are passed on so that a killed run kills the guest too.
qemu-system-x86_64 "${args[@]}" &
qpid=$!
trap 'kill -KILL $qpid 2>/dev/null; rm -f "$vars"' EXIT
trap 'kill -KILL $qpid 2>/dev/null; exit 143' TERM INT
wait $qpid
