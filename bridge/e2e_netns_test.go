package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/internal/peertest"
)

// Tests that need a non-loopback address run in a network namespace of their own.
//
// baresip 1.0's ICE module skips loopback and link-local addresses when it gathers candidates,
// whatever net_interface says (test-peers.md §2.5): on 127.0.0.1 it has no candidate and the call
// fails ("ice: set default cands failed", "call: medianat 'ice' failed"). Outside a namespace it
// would use the host's real addresses, which tests must not touch. So the test makes a fresh
// namespace holding lo and one interface with a test address from 198.18.0.0/15 (RFC 2544
// benchmarking, never routed; no private range that could clash with a real network), and runs
// itself again inside it: the outer test creates and deletes the namespace, the inner test (the
// same test binary under `ip netns exec`, marked by netnsInnerEnv) starts wabridge in-process and
// the peers as usual, bound to that address. Nothing is configured in the host's namespace, and
// traffic to the namespace's own address never leaves it.
//
// The interface is a dummy one; kernels built without the dummy driver (some VMs' minimal
// kernels) get a veth pair instead, both ends inside the namespace, which serves the same purpose.

const (
	// netnsInnerEnv is set, to the namespace's name, in the test binary that runs inside it.
	netnsInnerEnv = "WABRIDGE_TEST_NETNS"
	// netnsAddr is the namespace's one non-loopback address (RFC 2544 benchmarking range).
	netnsAddr   = "198.18.0.1"
	netnsPrefix = "/24"
	// netnsIf is the interface holding netnsAddr.
	netnsIf = "wb0"
	// netnsInnerTimeout bounds the inner test binary as a whole.
	netnsInnerTimeout = 2 * time.Minute
	// ipTimeout bounds one `ip` command.
	ipTimeout = 10 * time.Second
)

var netnsSeq atomic.Int64

// inNetns runs the calling test inside a network namespace of its own. In the outer test binary it
// creates the namespace (netnsAddr on netnsIf, lo up), runs this test again inside it with
// `ip netns exec`, reports the inner run's outcome as its own (pass, skip or failure, with the
// inner output), deletes the namespace, and returns false: the caller returns. In the inner run
// it checks that netnsAddr is local and returns true: the caller goes on with the test body.
//
// It needs Linux, root (creating a namespace needs CAP_SYS_ADMIN; `ip netns` needs its bind
// mounts under /run/netns) and iproute2's ip. Without root the test is skipped, with a message
// saying so; without ip it is skipped, or fails in CI (peertest.RequireTool). A namespace that
// cannot be created is a skip on a developer's machine (an unprivileged container) and a failure
// in CI.
func inNetns(t *testing.T) bool {
	t.Helper()
	if ns := os.Getenv(netnsInnerEnv); ns != "" {
		requireLocalAddr(t, ns)
		return true
	}
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("network namespaces are Linux-only; skipping")
	}
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace (ip netns add) needs root; skipping " +
			"(run `go test` as root, as CI does, to include this test)")
	}
	ipBin := peertest.RequireTool(t, "ip", "iproute2")
	// Fail or skip before making a namespace when a peer is missing: the inner run would only
	// report the same.
	peertest.RequireTool(t, "baresip", "baresip-core")
	peertest.RequireTool(t, "sipp", "sip-tester")

	ns := fmt.Sprintf("wbtest-%d-%d", os.Getpid(), netnsSeq.Add(1))
	createNetns(t, ipBin, ns)

	self, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), netnsInnerTimeout)
	defer cancel()
	args := []string{"netns", "exec", ns, self,
		"-test.run", "^" + regexp.QuoteMeta(t.Name()) + "$", "-test.v", "-test.count", "1",
		// The inner binary's own timeout comes first, so that a hang ends with its goroutine dump.
		"-test.timeout", (netnsInnerTimeout - 20*time.Second).String()}
	cmd := exec.CommandContext(ctx, ipBin, args...)
	cmd.Env = append(os.Environ(), netnsInnerEnv+"="+ns)
	// The inner binary (and so wabridge) runs in the package directory, as go test runs it.
	cmd.Dir, err = os.Getwd()
	require.NoError(t, err)
	// On timeout, kill the peers still in the namespace before the inner binary, so that it
	// reaps them (killed after it, they would become orphans).
	cmd.Cancel = func() error {
		killNetnsProcs(t, ipBin, ns, cmd.Process.Pid)
		time.Sleep(time.Second)
		return cmd.Process.Kill()
	}
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	output := string(out)
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("inner test in namespace %s did not finish within %s:\n%s", ns, netnsInnerTimeout, output)
	case err != nil && !errors.As(err, &exitErr):
		t.Fatalf("running the inner test in namespace %s: %v\n%s", ns, err, output)
	case err != nil:
		t.Fatalf("inner test in namespace %s failed (%v):\n%s", ns, err, output)
	case strings.Contains(output, "--- SKIP: "+t.Name()):
		t.Skipf("inner test in namespace %s skipped:\n%s", ns, output)
	case !strings.Contains(output, "--- PASS: "+t.Name()):
		t.Fatalf("inner test in namespace %s did not report a pass:\n%s", ns, output)
	}
	if testing.Verbose() {
		t.Logf("inner test in namespace %s:\n%s", ns, output)
	}
	return false
}

// createNetns makes namespace ns with lo up and netnsAddr on netnsIf, and deletes it in cleanup,
// killing whatever still runs in it first: only this test's processes can (its name is unique).
func createNetns(t *testing.T, ipBin, ns string) {
	t.Helper()
	if out, err := runIP(ipBin, "netns", "add", ns); err != nil {
		msg := fmt.Sprintf("cannot create network namespace %s (%v): %s", ns, err, out)
		if peertest.InCI() {
			t.Fatalf("%s; CI must run this test: run it as root with CAP_SYS_ADMIN (a privileged container)", msg)
		}
		t.Skipf("%s; skipping", msg)
	}
	t.Cleanup(func() { deleteNetns(t, ipBin, ns) })

	steps := [][]string{{"-n", ns, "link", "set", "lo", "up"}}
	if out, err := runIP(ipBin, "-n", ns, "link", "add", netnsIf, "type", "dummy"); err != nil {
		// No dummy driver in this kernel: a veth pair whose two ends both stay in the namespace.
		t.Logf("no dummy interface in namespace %s (%v: %s); using a veth pair inside it", ns, err, strings.TrimSpace(out))
		steps = append(steps,
			[]string{"-n", ns, "link", "add", netnsIf, "type", "veth", "peer", "name", netnsIf + "p"},
			[]string{"-n", ns, "link", "set", netnsIf + "p", "up"})
	}
	steps = append(steps,
		[]string{"-n", ns, "addr", "add", netnsAddr + netnsPrefix, "dev", netnsIf},
		[]string{"-n", ns, "link", "set", netnsIf, "up"})
	for _, s := range steps {
		if out, err := runIP(ipBin, s...); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
}

// killNetnsProcs kills every process in namespace ns but the one with pid except (0: none).
// Only this test's processes can be there: the namespace's name is unique to it.
func killNetnsProcs(t *testing.T, ipBin, ns string, except int) {
	t.Helper()
	out, err := runIP(ipBin, "netns", "pids", ns)
	if err != nil {
		t.Logf("ip netns pids %s: %v: %s", ns, err, out)
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 && pid != except {
			t.Logf("killing process %d left in namespace %s", pid, ns)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// deleteNetns kills the processes left in ns, deletes it and checks that it is gone.
func deleteNetns(t *testing.T, ipBin, ns string) {
	t.Helper()
	killNetnsProcs(t, ipBin, ns, 0)
	if out, err := runIP(ipBin, "netns", "del", ns); err != nil {
		t.Errorf("ip netns del %s: %v: %s", ns, err, out)
	}
	out, err := runIP(ipBin, "netns", "list")
	if err != nil {
		t.Errorf("ip netns list: %v: %s", err, out)
		return
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == ns {
			t.Errorf("network namespace %s still exists after ip netns del", ns)
		}
	}
}

func runIP(ipBin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, ipBin, args...).CombinedOutput()
	return string(out), err
}

// requireLocalAddr fails the inner test unless netnsAddr is one of this namespace's addresses.
func requireLocalAddr(t *testing.T, ns string) {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().String() == netnsAddr {
			return
		}
	}
	t.Fatalf("%s=%s is set, but %s is not an address of this network namespace (%v)", netnsInnerEnv, ns, netnsAddr, addrs)
}

// TestNetnsBaresipDTLSICE is Meta's default media profile (ICE + DTLS-SRTP, SIP over TLS) with
// an implementation we did not write on the WhatsApp side: baresip with mediaenc=dtls_srtp and
// medianat=ice, rtcp-mux and Opus, calls wabridge like Meta (digest with the business number's
// digits as username), wabridge bridges to sipp's echo as the PBX, and baresip must record its own
// 440 Hz tone back: Opus that went DTLS-SRTP → RTP → RTP → DTLS-SRTP.
//
// How baresip 1.0 differs from Meta, and what that exercises:
//   - It is a full ICE agent and, as the offerer, starts controlling, like wabridge (which is
//     always controlling, for ice-lite Meta). The random tie-breakers settle the conflict
//     (RFC 8445 §7.3.1.1): baresip either switches to controlled when our check arrives, or
//     answers it 487 and pion switches. Both happen across runs, and both must connect.
//   - It offers a=setup:actpass with a SHA-256 fingerprint, so wabridge is the DTLS client; as the
//     server (OpenSSL) baresip picks the profile, AES_CM_128_HMAC_SHA1_80 over our preferred GCM.
//   - Its ICE credentials and fingerprint are at session level (Meta's are at media level).
//   - It needs rtcp_mux yes: wabridge's WhatsApp leg is rtcp-mux only (UDP/TLS/RTP/SAVPF).
//   - At hang-up it sends its RTCP BYE after tearing down SRTP (baresip's stream destructor frees
//     the media encryption before the RTP session), so wabridge may log one SRTCP authentication
//     failure as the call ends. That is baresip's, and harmless; the test does not count it.
func TestNetnsBaresipDTLSICE(t *testing.T) {
	if !inNetns(t) {
		return
	}
	ip := netip.MustParseAddr(netnsAddr)
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Timeout: 40 * time.Second, BindIP: ip})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String(), dtls: true, bindIP: netnsAddr})
	cert, key := peertest.SelfSignedCert(t)
	digits := strings.TrimPrefix(business, "+")
	ua := peertest.StartBaresip(t, peertest.BaresipOptions{
		BindIP: ip, TLS: true, CertPEM: cert, KeyPEM: key, CAPEM: h.cert,
		Account: fmt.Sprintf("<sip:%s@%s;transport=tls>;auth_user=%s;auth_pass=%s;regint=0;"+
			"mediaenc=dtls_srtp;medianat=ice;audio_codecs=opus/48000/2", waUser, netnsAddr, digits, sipPassword),
		AudioSource: "ausine,440",
		RTCPMux:     true, // wabridge's WhatsApp leg is rtcp-mux only, like Meta
		ExtraConfig: []string{"module ice.so"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The account's transport=tls makes baresip use TLS; the URI must not repeat it (baresip
	// would append a second one).
	require.NoError(t, ua.Dial(fmt.Sprintf("sip:%s@%s", business, h.srv.Addrs().WhatsAppTLS)))
	// With DTLS, baresip reports CALL_ESTABLISHED (the 200 OK) before CALL_MENC (the handshake,
	// which starts once its ICE checks completed): wait for both, in whichever order.
	seen := map[string]string{}
	for len(seen) < 2 {
		ev, err := ua.WaitEvent(ctx, "CALL_ESTABLISHED", "CALL_MENC", "CALL_CLOSED")
		require.NoError(t, err, "events so far: %v", seen)
		require.NotEqual(t, "CALL_CLOSED", ev.Type, "call closed before it was established with DTLS-SRTP: %s (events so far: %v)", ev.Param, seen)
		seen[ev.Type] = ev.Param
	}
	// dtls_srtp's event names the stream and component, not the SRTP profile.
	assert.Equal(t, "0,audio,RTP", seen["CALL_MENC"])

	time.Sleep(3 * time.Second) // let audio flow both ways
	require.NoError(t, ua.Hangup())
	_, err := ua.WaitEvent(ctx, "CALL_CLOSED")
	require.NoError(t, err)
	sipp.RequireSuccess(t, 10*time.Second) // the PBX leg ended with the WhatsApp side
	h.waitIdle()
	ua.Stop() // closes the recordings

	// Both sides say the media was ICE + DTLS-SRTP, on the namespace's address.
	logs := h.logs.String()
	assert.Contains(t, logs, "ICE and DTLS connected")
	assert.Contains(t, logs, `"remote":"`+netnsAddr+`:`, "the ICE-selected pair is on the namespace's address")
	bsLog := readFile(t, filepath.Join(ua.Dir(), "stdout.log"))
	assert.Contains(t, bsLog, "ice: audio: connectivity check is complete")
	// baresip names the hash as our a=fingerprint spells it ("sha-256").
	assert.Regexp(t, `(?i)dtls_srtp: verified sha-256 fingerprint OK`, bsLog)
	assert.Contains(t, bsLog, "DTLS-SRTP complete (audio/RTP)")

	recs := ua.Recordings()
	require.Len(t, recs, 1)
	w, err := peertest.ReadWAV(recs[0])
	require.NoError(t, err)
	assert.Greater(t, w.Duration(), 2.0)
	f, err := w.DominantFrequency()
	require.NoError(t, err)
	assert.InDelta(t, 440, f, 5, "baresip must hear its own tone echoed through wabridge and the PBX")
	t.Logf("baresip recorded %.1f s at %.0f Hz; ICE roles: %s", w.Duration(), f, iceRoles(logs, bsLog))
}

// iceRoles tells how the ICE role conflict between two controlling agents was settled, from
// wabridge's logs (pion's messages) and the ICE state baresip dumps when its checks complete. The
// tie-breakers are random, so either side may yield: baresip switches by itself when wabridge's
// check arrives with the higher tie-breaker, otherwise it answers 487 and wabridge (pion)
// switches.
func iceRoles(logs, baresipLog string) string {
	var out []string
	if m := regexp.MustCompile(`local_role=(\w+)`).FindStringSubmatch(baresipLog); m != nil {
		out = append(out, "baresip ended "+m[1])
	}
	switch {
	case strings.Contains(logs, "Received role conflict error (487)"):
		out = append(out, "wabridge got 487 and switched to controlled")
	case strings.Contains(logs, "Role conflict local and remote same role"):
		out = append(out, "wabridge saw a conflicting check")
	default:
		out = append(out, "wabridge stayed controlling")
	}
	return strings.Join(out, ", ")
}
