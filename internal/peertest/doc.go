// Package peertest runs real SIP/RTP peers (sipp, baresip) against wabridge in tests, and makes
// and checks the media they exchange: RTP pcap files that sipp can play, recognizable payloads,
// RFC 4733 DTMF packets and tone detection in WAV recordings.
//
// Every peer is a child process bound to 127.0.0.1 (or the address its options give as BindIP,
// e.g. in a network namespace the test made) on ports the OS picked, owned by one test:
// t.Cleanup kills and reaps it, and its logs go to t.TempDir(). When a tool is missing the test is
// skipped, except under CI (the CI environment variable set), where it fails: CI installs the tools
// (.ci/run) and must not pass by skipping them.
//
// The sipp scenarios live in examples/sipp; ScenarioPath finds them. Tool-specific behaviour this
// package relies on is recorded in docs/test-peers.md of the shared notes.
package peertest
