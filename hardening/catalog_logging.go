package hardening

// coredumpControls keep core dumps, which can hold secrets, from being
// written anywhere.
func coredumpControls() []Control {
	return []Control{
		coreLimitControl(),
		systemdConfControl("coredump.storage", "systemd-coredump stores no core dumps", coredumpFile, "systemd/coredump.conf", "Coredump", "Storage", "none", all, cis("1.5.5")),
		systemdConfControl("coredump.process-size", "systemd-coredump processes no core dumps", coredumpFile, "systemd/coredump.conf", "Coredump", "ProcessSizeMax", "0", all, cis("1.5.5")),
		systemdConfControl("coredump.service-limit", "Services start with a zero core size limit", systemFile, "systemd/system.conf", "Manager", "DefaultLimitCORE", "0", all, srg("SRG-OS-000480-GPOS-00227")),
	}
}

// journaldControls keep the journal on disk, compressed.
func journaldControls() []Control {
	return []Control{
		systemdConfControl("journald.storage", "The journal is kept on disk across reboots", journaldFile, "systemd/journald.conf", "Journal", "Storage", "persistent", all, cis("6.1.2.2"), srg("SRG-OS-000341-GPOS-00132")),
		systemdConfControl("journald.compress", "Large journal entries are compressed", journaldFile, "systemd/journald.conf", "Journal", "Compress", "yes", all, cis("6.1.2.3")),
	}
}
