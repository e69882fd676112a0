// Package registry reads and verifies registries of models, algorithms,
// services, agents and images: OMERTAOS's ai_registry format, which this
// appliance extends for its own, signed with minisign.
//
// OMERTAOS promised reproducible, signed registries; its checksums were
// placeholders and its signatures were never checked. Here every file is
// hashed, every signature is verified against keys an administrator put in
// the trust directory, and a placeholder is reported as one and never
// accepted.
//
// # Layout
//
// A registry is one directory:
//
//	REGISTRY.yaml               the index: what the registry offers
//	registry.lock.json          the SHA-256 (and size) of every file
//	registry.lock.json.minisig  minisign's signature of the lock's bytes
//	models/<provider>/<name>.yaml      model manifests (kind: model)
//	algorithms/<type>/<name>.yaml      OMERTAOS algorithm manifests
//	services/<category>/<name>.yaml    OMERTAOS service manifests
//	agents/<id>.yaml            agent manifests (apiVersion omertaos.dev/v1, kind Agent)
//	images/<name>.oci.tar       OCI image archives
//	files/...                   other blobs: model weights, scripts
//
// Only the three top-level names are fixed; the others are conventions,
// since the index names every path. REGISTRY.yaml is OMERTAOS's
//
//	registry_version: "1.0"
//	catalog:
//	  models:     [{path: models/ollama/llama3.2-3b.yaml, requiresApiKey: false}, ...]
//	  algorithms: [...]
//	  services:   [...]
//	  agents:     [...]   # this appliance's additions
//	  images:     [...]
//	  files:      [...]
//	installed: {models: {}, algorithms: {}, services: {}}
//	signing: {method: minisign, public_key: security/publickey.txt}
//	metadata: {generated_at: ..., generated_by: ...}
//
// (a catalog item may also be a bare path string, as update_catalog.py
// writes them). The lock is OMERTAOS's too:
//
//	{"generated_at": "...", "entries": [
//	  {"kind": "model", "name": "llama3.2-3b", "path": "models/ollama/llama3.2-3b.yaml",
//	   "sha256": "<64 hex>", "size": 611},
//	  {"kind": "image", "name": "web", "path": "images/web.oci.tar",
//	   "sha256": "<64 hex>", "size": 123456, "digest": "sha256:<OCI manifest digest>"}]}
//
// with two optional additions: size, and, for an image, the OCI digest the
// import must find in the archive. BuildLock (omerta registry lock) writes
// it from the index.
//
// A manifest's integrity mapping is about its artifact: integrity.sha256 is
// the artifact's SHA-256 and integrity.signature the full text of a
// minisign signature of it (a YAML block scalar). When download.url is a
// plain relative path the artifact ships in the registry and both are
// checked; otherwise (https, ollama://, file:///opt/...) they cannot be
// checked offline and are reported as not-checked, a warning. A
// placeholder fails either way.
//
// # Verification
//
// Verify reports a Finding per file, entry, manifest and signature, the
// right ones included (CodeOK), so a person sees what was checked and not
// only what failed:
//
//   - each lock entry's file: ok, digest-mismatch (both digests given),
//     missing-file, refused-file (not a regular file, a symlink leading out
//     of the registry, over its cap), placeholder-digest (all zeros);
//   - each catalog entry: missing-from-lock when the lock lacks its path
//     (an entry outside the lock is never trusted, and is still read so
//     its manifest's own problems are reported);
//   - the lock's signature: ok (with the key ID and the trusted comment),
//     unsigned, missing-public-key (a key ID the trust directory lacks:
//     reported, never skipped), bad-signature (the content or the trusted
//     comment changed, or a malformed file), placeholder-signature;
//   - each manifest: invalid-manifest with the field's path (required
//     fields, types, unknown fields: decoding is strict), placeholder-digest
//     (all zeros, "...", "placeholder", the digest of empty input),
//     placeholder-signature ("minisign:ABC123"), and the artifact checks.
//
// REGISTRY.yaml's signing.public_key is only the registry's own word: a
// missing or malformed one is a warning. Which keys are trusted is decided
// by the trust directory alone (DefaultTrustDir, /etc/omerta/trust): every
// *.pub file in it is a minisign public key (minisign -G writes them).
//
// # Signatures
//
// Signatures are minisign's format, checked with aead.dev/minisign and
// interoperable with the minisign tool both ways: Sign writes a prehashed
// (BLAKE2b-512, "ED") signature with the trusted comment minisign itself
// writes, so `minisign -Vm registry.lock.json -p key.pub` accepts it, and a
// signature from `minisign -Sm registry.lock.json` verifies here. The key ID
// in a signature only selects the key; a signature naming a trusted key's
// ID that the key does not verify is bad-signature.
//
// # Hostile input
//
// Every file is read through os.Root, which refuses (race-free) any path
// or symlink that leads outside the registry; paths in the index and the
// lock must also be relative and clean (no "..", no backslash, no control
// character). Each read is capped (Limits: 1 MiB index, 4 MiB lock, 128
// KiB manifest, 16 KiB signature, 64 GiB blob, 10000 entries), a FIFO or
// device is refused without blocking, YAML goes through safeyaml (no
// aliases, bounded depth and counts) and JSON through a token reader that
// refuses repeated keys. Every foreign string in a finding is quoted;
// WriteText escapes each line for the terminal.
//
// # Admission (the contract with the agents service)
//
// Verifier is what omertad calls before it deploys an agent (CheckAgent,
// or ImageSigner, which the agents service's ImageVerifier interface
// takes: the trusted key ID that vouches for an image digest, "" when
// none), imports an image archive (CheckImage) or enables a model
// (CheckModel, CheckModelManifest). Each returns a Decision: Allowed, the deciding Code
// and Reason (one line, safe to show), Warnings, every Finding, and, when a
// signed registry vouches, its directory, key ID and the image digest it
// pins. Decide applies the profile:
//
//   - a failure (digest mismatch, placeholder, bad signature, invalid
//     manifest, a model that does not fit the GPUs) refuses in every
//     profile;
//   - vouched for by a registry whose lock verifies against a trusted key,
//     with no failure there: allowed;
//   - otherwise unsigned: enterprise refuses; user and pro allow, with a
//     warning in Decision.Warnings.
//
// The caller must show the Reason of a refusal, show every warning, and
// append the Decision (at least Subject, Code, Reason, Warnings, Registry,
// KeyID) to the audit chain whether it allowed or not; Decision.Err()
// returns a *DeniedError that matches ErrDenied (and ErrNotFound for a
// model no registry lists) for the API to map to 403 or 404. The Verifier
// keeps nothing between calls: each reads the locks again and hashes only
// the files the subject needs.
//
// # Models and GPUs
//
// A model manifest's resources.vram_gb is in gigabytes of 10^9 bytes.
// CheckVRAM takes the GPUs the probe found (name, total and free bytes) and
// refuses a model that no single GPU has the free memory for, with the
// numbers of each; a model served by a provider's API (download.method api
// or access api_key) needs none of this machine's memory and is not
// checked.
package registry
