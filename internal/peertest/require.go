package peertest

import (
	"encoding/binary"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// InCI reports whether the tests run in CI (the CI environment variable is set, as GitHub
// Actions, GitLab and .ci/run do). There a missing peer is a failure, not a skip: the peer tests
// are the point of CI.
func InCI() bool { return os.Getenv("CI") != "" }

// RequireTool returns the path of an external program, or ends the test: skipped on a
// developer's machine without it, failed in CI.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if InCI() {
		t.Fatalf("peertest: %s not found in PATH, and CI must run the peer tests: install the Debian package %s (.ci/run does)", name, pkg)
	}
	t.Skipf("peertest: %s not found in PATH (install the Debian package %s); skipping", name, pkg)
	return ""
}

// RequireRawSocket ends the test unless program can open raw IPv4 sockets, which sipp's
// play_pcap_audio sends through: either this process can (root or CAP_NET_RAW, inherited by its
// children) or program's file carries cap_net_raw (setcap cap_net_raw+ep, what .ci/run does when
// it is not root). Skipped locally, failed in CI.
func RequireRawSocket(t testing.TB, program string) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_UDP)
	if err == nil {
		syscall.Close(fd)
		return
	}
	if fileHasCapNetRaw(program) {
		return
	}
	if InCI() {
		t.Fatalf("peertest: %s cannot open raw sockets (%v here, and no cap_net_raw on the file), which play_pcap_audio needs: run as root or `setcap cap_net_raw+ep %s`", program, err, program)
	}
	t.Skipf("peertest: %s cannot open raw sockets, which play_pcap_audio needs (run as root or `setcap cap_net_raw+ep %s`); skipping", program, program)
}

// fileHasCapNetRaw reads a file's capability set (the security.capability attribute,
// struct vfs_cap_data in linux/capability.h) and reports whether CAP_NET_RAW is permitted and
// effective when it runs.
func fileHasCapNetRaw(path string) bool {
	const (
		capNetRaw      = 13
		vfsCapEffectve = 0x1 // VFS_CAP_FLAGS_EFFECTIVE in magic_etc
	)
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(path, "security.capability", buf)
	if err != nil || n < 8 {
		return false
	}
	magic := binary.LittleEndian.Uint32(buf[0:])
	permitted := binary.LittleEndian.Uint32(buf[4:]) // low 32 capabilities
	return magic&vfsCapEffectve != 0 && permitted&(1<<capNetRaw) != 0
}
