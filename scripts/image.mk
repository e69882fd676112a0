# Image targets, included from the root Makefile.
#
#   make image   out/omertaos.raw, out/omertaos.raw.zst, out/SHA256SUMS
#   make qemu    boot out/qemu/omertaos.raw (a working copy) with the serial
#                console here; QEMU_FRESH=1 starts again from out/omertaos.raw
#   make e2e     the end-to-end test on a fresh image (see scripts/e2e/)
#   make cmdline-bench
#                what each kernel parameter of the image costs under QEMU
#                (scripts/cmdlinebench; out/cmdline-bench.json)

.PHONY: image image-deps qemu e2e cmdline-bench

# Host packages the image build and the QEMU boot need. apt retries
# transient download errors itself; the loop covers a busy dpkg lock and a
# mirror that fails a whole run.
IMAGE_HOST_PACKAGES := debian-archive-keyring python3 qemu-system-x86 ovmf mtools e2fsprogs zstd minisign
image-deps:
	@missing=$$(for p in $(IMAGE_HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		for i in 1 2 3 4 5; do \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Acquire::Retries=5 -o DPkg::Lock::Timeout=600 $$missing && exit 0; \
			echo "image-deps: apt attempt $$i failed; retrying" >&2; sleep $$((i * 10)); \
		done; exit 1; \
	fi

image: image-deps
	$(MAKE) build agents
	scripts/image.sh

qemu: image-deps
	@[ -f out/omertaos.raw ] || $(MAKE) image
	@mkdir -p out/qemu
	@if [ -n "$(QEMU_FRESH)" ] || [ ! -f out/qemu/omertaos.raw ] || [ out/omertaos.raw -nt out/qemu/omertaos.raw ]; then \
		cp --sparse=always out/omertaos.raw out/qemu/omertaos.raw; fi
	scripts/qemu.sh --disk out/qemu/omertaos.raw

# E2E_FLAGS passes options to the test (go run ./scripts/e2e -h lists them).
# The image is rebuilt first unless it is newer than everything that goes
# into it. Under TCG the whole run takes about 32 minutes (a rehearsal:
# 1878 s), most of it the Lynis audit (23 min), beside which the power-loss
# and bad-config boots run.
e2e: image-deps
	@scripts/install-deps.sh browser
	$(MAKE) build agents
	@if [ ! -f out/omertaos.raw ] || [ -n "$$(find mkosi.conf image scripts/cmdline hardening out/agents -newer out/omertaos.raw -print -quit)" ] \
		|| ! grep -q "\"omerta\": \"$$(sha256sum bin/omerta | cut -d' ' -f1)\"" out/build-info.json 2>/dev/null \
		|| ! grep -q "\"omerta_console\": \"$$(sha256sum bin/omerta-console | cut -d' ' -f1)\"" out/build-info.json 2>/dev/null; then \
		echo "e2e: out/omertaos.raw is missing or older than its inputs; rebuilding"; scripts/image.sh; fi
	$(GO) run ./scripts/e2e -image out/omertaos.raw -omerta bin/omerta -out out/e2e-results.json $(E2E_FLAGS)

# The image's own kernel and command line (from its unified kernel image)
# with a busybox initramfs: 14 variants x CMDLINE_ROUNDS boots of about a
# minute each under TCG. Not in CI; run it on a quiet machine.
CMDLINE_ROUNDS ?= 3
cmdline-bench: image-deps
	@[ -f .cache/mkosi-out/omertaos.efi ] || $(MAKE) image
	@dpkg-query -W -f='$${Status}\n' busybox-static 2>/dev/null | grep -q '^install ok installed' || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Acquire::Retries=5 busybox-static
	@mkdir -p out
	$(GO) run ./scripts/cmdlinebench -rounds $(CMDLINE_ROUNDS) -out out/cmdline-bench.json
