# The sample agents' OCI archives, included from the root Makefile.
#
#   make agents   out/agents/tool.oci.tar, web.oci.tar and echo-model.oci.tar
#                 (the model gateway's local backend), their .digest
#                 files and out/agents/index.json ({name: {ref, digest,
#                 size, archive}}), rebuilt when a source changes
#
# The build is reproducible: the same source and Go toolchain give the same
# digests. Every timestamp in the images is SOURCE_DATE_EPOCH when the
# environment sets it, else 1970-01-01 (so that a commit which does not touch
# the agents keeps their digests).

.PHONY: agents

AGENTS_OUT      := out/agents
AGENT_NAMES     := tool web echo-model
AGENT_OUTPUTS   := $(AGENT_NAMES:%=$(AGENTS_OUT)/%.oci.tar) $(AGENT_NAMES:%=$(AGENTS_OUT)/%.digest) $(AGENTS_OUT)/index.json
# What goes into the archives: the agents (the web agent uses the tool's ops
# package), the packages of ours they and the builder import, the builder,
# the module's dependency list.
AGENT_SOURCES   := $(shell find image/agents scripts/agentimage appliance/safeio appliance/atomicfile \
                     -type f \( -name '*.go' -o -name '*.html' -o -name '*.css' \) -not -name '*_test.go' 2>/dev/null) \
                   go.mod go.sum

agents: $(AGENT_OUTPUTS)

# One run writes every output (a grouped target, GNU make 4.3). agentimage
# leaves an unchanged file untouched, so the outputs are touched here: make
# compares times, and an untouched output would rebuild on every run.
$(AGENT_OUTPUTS) &: $(AGENT_SOURCES)
	$(GO) run ./scripts/agentimage -out $(AGENTS_OUT) -go $(GO)
	@touch $(AGENT_OUTPUTS)
