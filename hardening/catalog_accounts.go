package hardening

// loginControls set password ageing and hashing (login.defs) and the
// default permissions of login sessions (login.defs, the shell profile).
func loginControls() []Control {
	return []Control{
		loginDefsControl("PASS_MAX_DAYS", "365", "Passwords expire after at most 365 days", "between 1 and 365", intAtMost(365), all, cis("5.4.1.1")),
		loginDefsControl("PASS_MIN_DAYS", "1", "Passwords cannot be changed again within a day", "at least 1", intAtLeast(1), all, cis("5.4.1.2")),
		loginDefsControl("PASS_WARN_AGE", "7", "Users are warned 7 days before a password expires", "at least 7", intAtLeast(7), all, cis("5.4.1.3")),
		loginDefsControl("ENCRYPT_METHOD", "YESCRYPT", "Passwords are hashed with yescrypt", "YESCRYPT", equalFold("YESCRYPT"), all, cis("5.4.1.4"), srg("SRG-OS-000073-GPOS-00041")),
		loginDefsControl("SHA_CRYPT_MIN_ROUNDS", "65536", "SHA-crypt hashes use at least 5000 rounds", "at least 5000", intAtLeast(5000), all, srg("SRG-OS-000073-GPOS-00041")),
		loginDefsControl("SHA_CRYPT_MAX_ROUNDS", "65536", "SHA-crypt hashes use at most a bounded, high number of rounds", "at least 5000", intAtLeast(5000), all, srg("SRG-OS-000073-GPOS-00041")),
		loginDefsControl("UMASK", "027", "New files are not readable by others (login.defs)", describeUmask(0o027), umaskAtLeast(0o027), all, cis("5.4.3.3")),
		ownedLinesControl("shell.umask", "Login shells start with umask 027", profileFile, []string{"umask 027"}, all, cis("5.4.3.3")),
		ownedLinesControl("shell.tmout", "Idle interactive shells end after 15 minutes", profileFile, []string{"TMOUT=900", "readonly TMOUT", "export TMOUT"}, proUp, cis("5.4.3.2")),
	}
}
