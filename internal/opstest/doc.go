// Package opstest checks what operators install next to the wabridge binary: the systemd unit
// and its sysusers/tmpfiles snippets (systemd-analyze verify and security), the Dockerfile
// (parsed: CI has no Docker engine), the Asterisk and FreeSWITCH kits in examples/ (the syntax
// we can check without those PBXs, which Debian does not package), and the Kamailio dispatcher
// kit, which runs for real: Kamailio in front of two in-process wabridge instances carrying
// sipp calls to the WhatsApp emulator.
//
// The package has no code of its own; everything is in its tests. External tools (systemd-analyze,
// kamailio, sipp) are skipped when missing, except in CI (the CI environment variable set),
// where a missing tool fails the test.
package opstest
