// Package report builds, seals, verifies and renders the signed first-boot
// report, the document an auditor uses to check, offline and without trusting
// the vendor, what first boot did to a machine.
//
// # Shape
//
// A report is one JSON object {"header", "records", "addenda", "signature"}
// whose shape is published as a JSON Schema
// (schema/firstboot-report.v2.schema.json, also available as Schema).
// header.schema_version is SchemaVersion; a verifier refuses any other.
//
// # Addenda: the Lynis audit after first boot
//
// A Lynis audit takes minutes on real hardware and a quarter of an hour
// under emulation, so first boot does not wait for it: it seals the report
// with header.lynis_audit {"status": "deferred"} (or "skipped" with a
// reason), prints the setup token and finishes. The audit then runs, and its
// result is sealed as addenda[0] {"kind": "lynis", "status": "done", "lynis":
// {index, warnings, suggestions, version}, ...}, or "failed" with the error
// once every attempt failed. Sealing an addendum extends the chain and signs
// the report again with the same device key; the header and the records are
// not touched, so their hashes stay those first boot sealed.
//
// A copy of the report taken before the audit ended verifies, and Verify
// says the audit is pending (Verification.Audit, and the "lynis audit"
// check). An addendum that was changed, reordered or removed from the
// report it was sealed into fails verification (the chain and
// signature.addenda_head). What no offline check can tell is an older copy,
// complete and signed in its time, offered in place of the newer one: an
// auditor who needs the audit's result requires Audit.Status "done".
//
// # The NVIDIA driver extension
//
// header.gpu_extension, when present, says what `omerta gpu extension
// merge` did, at the boot that sealed the report, with the image's NVIDIA
// driver, a system extension merged only on a machine with an NVIDIA GPU:
// {"outcome": "merged" | "not-merged" | "refused" | "failed", "reason",
// "forced", "driver_version", "modules", "kernel", "sha256"}, copied from
// /run/omerta/gpu-extension.json (read bounded and strictly, see
// appliance/gpu/extension.ReadState). When that file was there but could
// not be read or was invalid, the outcome is "unreadable" and the reason
// says why, so a report never hides that the record was tampered with;
// when there was none (an image without the extension), the member is
// absent. It was added to v2 as an optional member: reports sealed
// without it verify as before.
//
// # Canonical encoding
//
// Hashes are taken over values, not bytes, so that reformatting a report
// (indentation, member order, escape spelling) does not break it, while any
// change of a value does. The canonical form of a JSON value is RFC 8785,
// the JSON Canonicalization Scheme (JCS):
//
//   - no whitespace outside strings;
//   - object members sorted by their names compared as UTF-16 code units
//     (all names in a v2 report are ASCII, so this is plain byte order);
//   - strings in UTF-8 with only these escapes: \" \\ \b \f \n \r \t, and
//     \u00xx (lowercase hex) for the other characters below U+0020; every
//     other character, including '<', '>', '&', U+2028 and non-ASCII, as is;
//   - numbers as ECMAScript's Number.prototype.toString prints them (a v2
//     report holds only integers, which print as plain decimal);
//   - true, false, null as such.
//
// A document with a duplicated member name, invalid UTF-8 or data after the
// top-level object is refused before anything is hashed.
//
// # Hashes and the chain
//
// All hashes are SHA-256, written as 64 lowercase hex digits.
//
//	header_hash      = SHA-256(JCS(header))
//	records[i].hash  = SHA-256(JCS(records[i] without its "hash" member))
//	records[0].prev_hash   = header_hash
//	records[i].prev_hash   = records[i-1].hash
//	addenda[i].hash  = SHA-256(JCS(addenda[i] without its "hash" member))
//	addenda[0].prev_hash   = signature.chain_head
//	addenda[i].prev_hash   = addenda[i-1].hash
//	signature.header_sha256 = header_hash
//	signature.chain_head    = hash of the last record (header_hash when there are none)
//	signature.addenda_head  = hash of the last addendum (chain_head when there are none)
//
// records[i].seq and addenda[i].seq are i+1 and inside the hashed content,
// as is prev_hash, so reordering, inserting, deleting or truncating records
// or addenda breaks the chain, and chaining from the header hash binds the
// records to this header and the addenda to these records.
//
// With jq, one record's hash can be recomputed as
//
//	jq -cjS '.records[0] | del(.hash)' report.json | sha256sum
//
// (jq's output matches JCS for the strings and integers a v2 report holds,
// except that jq escapes U+007F as \u007f where JCS does not.)
//
// # Signature
//
// signature.value is the standard-base64 Ed25519 signature (RFC 8032, no
// prehash) by the device's signing key over the ASCII message
//
//	omertaos.dev/firstboot-report/v2\n
//	header_sha256=<header hash>\n
//	chain_head=<chain head>\n
//	addenda_head=<addenda head>\n
//
// signature.public_key is that key, its raw 32 bytes in standard base64, and
// signature.key_fingerprint is "SHA256:" + hex(SHA-256(raw key)), the value
// the console banner prints as "Report key".
//
// # Trust
//
// Checking the signature against signature.public_key proves only that the
// report is self-consistent: anyone who edits it can re-sign it with a key of
// their own. Verify says so unless it is given the device key, or its
// fingerprint, obtained out of band (the console banner, signing.pub copied
// by the operator).
//
// # Hostile input
//
// A verifier runs on an auditor's machine and must survive any file: a
// document over VerifyOptions.MaxBytes (DefaultMaxBytes), nested deeper
// than MaxDepth or holding more values than its size honestly can is
// refused before anything is hashed, with a *LimitError (errors.Is
// ErrTooLarge, ErrTooDeep, ErrTooMany). Identifiers (record, step, probe
// check and reference ids, hostname, machine and boot id, image version,
// tool names) may not hold a control or formatting character
// (terminal.Unsafe); free text may, and WriteVerification and WriteSummary
// print every string from the report escaped, so none can rewrite the
// terminal or forge the verdict line.
package report
