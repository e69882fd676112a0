// Package gpu gives agents NVIDIA GPUs: it reads the GPUs from NVML,
// knows which driver branch drives which GPU generation, admits agents to
// GPUs by count or by VRAM, writes the CDI spec that lets the container
// runtime hand exactly those GPUs to a container, and attributes GPU use
// to agents through their cgroups.
//
// # Inventory
//
// ReadInventory asks NVML for every GPU and, for a GPU in MIG mode, every
// MIG device. A unit is what can be handed out: a whole GPU not in MIG
// mode, or one MIG device. NVML's Init is called first and nothing else is
// when it fails: without libnvidia-ml any other call kills the process.
//
// # Driver generations
//
// DriverSeries says which generations each branch (535, 550, 570, 580)
// drives; OpenModulePolicy says what each generation needs from the kernel
// modules: the open ones are impossible before Turing (no GSP), allowed
// from Turing to Hopper, and required from Blackwell on. CheckDriver turns
// that into one reason per GPU ("blackwell needs driver branch 570 or
// later; branch 550 drives maxwell to hopper"), so that a B200 on Debian's
// 550 fails with that and not with a generic driver error. A branch not in
// the table is judged by the newest row at or below it. The architecture
// comes from NVML, or from the compute capability when NVML is older than
// the GPU.
//
// # Admission
//
// An Allocator admits a Request (Count units, each with MemoryBytes of
// VRAM free; Exclusive or Shared, as policy says) against the last
// inventory, and keeps each agent's Grant. What a unit still has is NVML's
// free memory less the part of each reservation on it that its agent is
// not yet seen using (Observe, from telemetry), and never more than its
// size less all reservations: an agent admitted but not started still
// holds its memory, and one that runs is not counted twice. The choice is
// deterministic: best fit for VRAM (the unit with the least left that
// fits), the smallest and emptiest units for an exclusive count, the least
// shared for a shared count, then GPU and MIG order. An exclusive unit
// admits nobody else and is never taken while shared. MIG devices serve a
// request only when it allows MIG, so that "a GPU" is not a seventh of
// one. A refusal is an *AdmissionError with the numbers ("needs 80 GiB,
// largest free is 40 GiB on GPU 3").
//
// Update takes a new inventory and returns the agents whose units are
// gone, whose whole GPU went into MIG mode, or whose driver changed; their
// grants are marked and stay until the caller stops or flags the agent and
// calls Release. Grants live in memory; after a restart the caller
// restores them (Restore) from what its containers were started with.
//
// # CDI
//
// GenerateCDISpec builds the spec with NVIDIA's own nvcdi from the same
// NVML handle, for the units whose GPU the driver supports: each whole GPU
// and each MIG device is a CDI device named by its UUID ("nvidia.com/gpu=
// GPU-…"), which, unlike an index, does not move when another GPU is lost.
// There is no "all" device and InjectDevices refuses one: admission names
// each unit. Debian ships no nvidia-container-toolkit, so by default the
// spec has no hooks (a hook naming a missing nvidia-cdi-hook fails every
// container start); instead of its create-symlinks hook the soname links
// of the mounted libraries (libcuda.so.1) are mounted too. nvcdi reads
// two things from the host's own /proc and /sys whatever the driver root:
// /proc/driver/nvidia-caps/mig-minors for MIG device nodes, and the PCI
// devices' DRM nodes. The spec is validated by the CDI library's own
// parser before it is written, and RefreshCDISpec replaces
// /var/run/cdi/nvidia.yaml inside the root atomically (rootfs: temporary
// file, fsync, rename, fsync; /var/run resolved inside the root) only when
// its content changed, and removes it when no supported GPU is left.
//
// InjectDevices applies to an OCI runtime spec exactly what the specs say
// for the named devices, through the CDI library's cache: their device
// nodes with device cgroup rules, the spec's common nodes and mounts, and
// nothing else. The spec directory is checked first (regular files, 1 MiB
// each, 64 files), since the library reads every file whole.
//
// # Telemetry
//
// CollectUsage reads each GPU's compute processes (memory) and their
// utilisation since the previous pass, places a process on its MIG device
// by its GPU and compute instance, and gives it to the agent whose cgroup
// holds it: /proc/PID/cgroup (parsed strictly, ParseCgroupFile) within
// ContainerCgroup(namespace, container), containerd's default path, the
// longest match winning. NVML's PIDs are the host's, so procDir must be
// the host's /proc, read from the host's cgroup namespace. A process in no
// agent's cgroup is reported as unattributed, with the reason.
//
// # Service
//
// Service is what omertad runs as "gpu". A refresh (at start, on every
// RefreshInterval, and whenever a telemetry pass finds the set of GPUs
// changed: one lost or added, MIG reconfigured, the driver replaced)
// reads the loaded module's flavour, rewrites the CDI spec and gives the
// Allocator exactly the GPUs the spec defines (SupportedInventory: a GPU
// the driver cannot drive is in neither), reporting each drifted agent to
// OnDrift once per reason rather than on every pass until it is released.
// A telemetry pass gives admission NVML's current free memory, attributes
// GPU processes to agents through the cgroups the caller lists, tells the
// Allocator what each agent uses (Observe) and hands the Usage to OnUsage
// for the event stream; Collectors serve the last pass on /metrics and
// never call NVML during a scrape. Without a driver the refresh records
// why and telemetry does nothing; Ready is closed after the first refresh,
// before which grants cannot be restored.
package gpu
