package hardening

import "github.com/omertaos/omertaos/appliance/config"

// sshdControls configure the OpenSSH server, when it is installed.
func sshdControls() []Control {
	var c []Control
	for _, s := range []struct {
		key, val, title, cisID string
		profiles               []config.Profile
	}{
		{"PermitRootLogin", "no", "root cannot log in over SSH", "5.1.20", all},
		{"PasswordAuthentication", "no", "SSH accepts keys only, never passwords", "5.1.19", all},
		{"KbdInteractiveAuthentication", "no", "SSH keyboard-interactive authentication is off", "5.1.19", all},
		{"PermitEmptyPasswords", "no", "SSH refuses empty passwords", "5.1.19", all},
		{"HostbasedAuthentication", "no", "SSH host-based authentication is off", "5.1.16", all},
		{"IgnoreRhosts", "yes", "SSH ignores .rhosts files", "5.1.17", all},
		{"PermitUserEnvironment", "no", "SSH users cannot set the environment of their session", "5.1.21", all},
		{"X11Forwarding", "no", "SSH X11 forwarding is off", "5.1.12", all},
		{"AllowTcpForwarding", "no", "SSH TCP forwarding is off", "5.1.12", all},
		{"AllowAgentForwarding", "no", "SSH agent forwarding is off", "5.1.12", all},
		{"GatewayPorts", "no", "SSH forwarded ports are not exposed to the network", "5.1.12", all},
		{"PermitTunnel", "no", "SSH tunnel devices are off", "5.1.12", all},
		{"MaxAuthTries", "3", "SSH allows at most 3 authentication attempts per connection", "5.1.14", all},
		{"MaxSessions", "2", "SSH allows at most 2 sessions per connection", "5.1.15", all},
		{"MaxStartups", "10:30:60", "SSH limits unauthenticated connections", "5.1.16", all},
		{"LoginGraceTime", "60", "SSH drops connections that do not authenticate within 60 seconds", "5.1.13", all},
		{"ClientAliveInterval", "300", "SSH probes idle clients every 5 minutes", "5.1.7", all},
		{"ClientAliveCountMax", "2", "SSH drops clients that miss two probes", "5.1.7", all},
		{"TCPKeepAlive", "no", "SSH uses its own encrypted keepalives, not spoofable TCP ones", "5.1.7", all},
		{"LogLevel", "VERBOSE", "SSH logs key fingerprints of logins", "5.1.13", all},
		{"UseDNS", "no", "SSH does not trust reverse DNS", "5.1.16", all},
		{"Compression", "no", "SSH compression is off", "5.1.16", all},
		{"StrictModes", "yes", "SSH checks the permissions of users' key files", "5.1.16", all},
		{"PrintLastLog", "yes", "SSH shows the last login on login", "5.1.16", all},
		{"AllowUsers", "omerta-admin", "Only the appliance admin account may log in over SSH", "5.1.4", all},
		{"Banner", issueNetFile, "SSH shows the legal banner before login", "5.1.5", all},
		{"Ciphers", "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr", "SSH uses only strong ciphers", "5.1.6", all},
		{"MACs", "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com", "SSH uses only encrypt-then-MAC SHA-2 MACs", "5.1.9", all},
		{"KexAlgorithms", "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512", "SSH uses only strong key exchanges", "5.1.8", all},
	} {
		c = append(c, sshdControl(s.key, s.val, s.title, s.profiles, cis(s.cisID), srg("SRG-OS-000033-GPOS-00014")))
	}
	return c
}
