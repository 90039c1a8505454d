package peertest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SippOptions configures one sipp process. Zero values give a UDP UAS or UAC for one call on
// 127.0.0.1 with ports picked by the OS.
type SippOptions struct {
	// BindIP is the local address for SIP, media and the control socket (-i, -mi, -ci), and what
	// Via, Contact and SDP say. Zero: 127.0.0.1. Another address must be one of this network
	// namespace's own (e.g. a test address on a dummy interface in a namespace the test made).
	BindIP    netip.Addr
	Scenario  string        // path of the XML scenario (-sf); see ScenarioPath
	Remote    string        // host:port to send the first request to; empty for a UAS
	Service   string        // -s: Request-URI user ([service]) of a UAC's INVITE
	LocalPort int           // -p: SIP port; 0 picks a free one
	MediaPort int           // -mp: [media_port]; 0 picks a free even one (sipp binds it and +2)
	Transport string        // -t: "u1" (default: UDP, one socket) or "t1" (TCP, one connection)
	Calls     int           // -m: exit after this many calls; default 1
	Timeout   time.Duration // -timeout with -timeout_error: sipp fails after this; default 30 s
	// CallDuration is -d: how long a scenario's <pause/> without milliseconds lasts (sipp's
	// default is 0).
	CallDuration time.Duration
	RTPEcho      bool              // -rtp_echo: send RTP arriving at MediaPort (and +2) back to its source
	Vars         map[string]string // -key NAME VALUE: the scenario's [NAME]; must cover every [NAME] it uses
	Globals      map[string]string // -set NAME VALUE: a global variable declared with <Global variables=…>
	ExtraArgs    []string          // appended last
}

// Exit codes of sipp 3.6.1, as observed (sipp(1) "EXIT STATUS" lists 0, 1, 97, 99, -1, -2).
const (
	SippExitSuccess = 0 // every call followed the scenario
	// SippExitCallFailed: at least one call failed, and also what 3.6.1 exits with when it
	// rejects a scenario at load time (an unknown [keyword] for a missing -key, a variable used
	// only once, a status code it cannot parse).
	SippExitCallFailed   = 1
	SippExitInternal     = 97  // exit on an internal command (stop_now)
	SippExitNoCalls      = 99  // normal exit without calls processed
	SippExitFatal        = 255 // -1: fatal error, including -timeout_error's global timeout
	SippExitFatalBinding = 254 // -2: could not bind a socket
)

// SippProc is a running sipp.
type SippProc struct {
	*process

	Options     SippOptions    // as started, with the defaults and picked ports filled in
	SIPAddr     netip.AddrPort // BindIP:LocalPort
	MediaAddr   netip.AddrPort // BindIP:MediaPort
	ControlPort int            // sipp's UDP control socket (-cp)
}

// sippStartAttempts bounds the retries when a picked port was taken before sipp bound it.
const sippStartAttempts = 5

// StartSipp starts sipp on 127.0.0.1 (or opts.BindIP) with opts and returns once it has bound its
// SIP port (or exited). Besides opts it always passes -i/-mi 127.0.0.1 -bind_local (so Via,
// Contact and SDP say 127.0.0.1 and nothing listens beyond loopback; BindIP in place of
// 127.0.0.1 throughout), -nostdin, a free control port (-ci 127.0.0.1 -cp: the default 8888 on
// 0.0.0.0 collides between parallel sipps), and traces:
// messages, errors, screen and <log> actions, in a directory of t.TempDir() (Dir). The process
// is killed at the end of the test; on failure its logs are added to the test output.
//
// sipp is skipped when missing, except in CI. A scenario that plays a pcap needs raw sockets
// (RequireRawSocket), as root or with cap_net_raw on the sipp binary.
func StartSipp(t testing.TB, opts SippOptions) *SippProc {
	t.Helper()
	bin := RequireTool(t, "sipp", "sip-tester")
	if opts.Scenario == "" {
		t.Fatal("peertest: SippOptions.Scenario is empty")
	}
	scenario, err := filepath.Abs(opts.Scenario)
	if err != nil {
		t.Fatalf("peertest: %v", err)
	}
	opts.Scenario = scenario
	body, err := os.ReadFile(scenario)
	if err != nil {
		t.Fatalf("peertest: sipp scenario: %v", err)
	}
	if bytes.Contains(body, []byte("play_pcap_")) {
		RequireRawSocket(t, bin)
	}
	switch opts.Transport {
	case "":
		opts.Transport = "u1"
	case "u1", "t1":
	default:
		t.Fatalf("peertest: sipp transport %q: want u1 or t1", opts.Transport)
	}
	if opts.Calls == 0 {
		opts.Calls = 1
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	opts.BindIP = bindIPOr(opts.BindIP)

	pickLocal, pickMedia := opts.LocalPort == 0, opts.MediaPort == 0
	for attempt := 1; ; attempt++ {
		o := opts
		if pickLocal {
			if o.Transport == "t1" {
				o.LocalPort = freeTCPPortOn(t, o.BindIP)
			} else {
				o.LocalPort = freeUDPPortOn(t, o.BindIP)
			}
		}
		if pickMedia {
			o.MediaPort = freeUDPPortRangeOn(t, o.BindIP, 4)
		}
		p, err := startSipp(t, bin, o)
		if err != nil {
			t.Fatalf("peertest: %v", err)
		}
		t.Cleanup(func() {
			p.Stop()
			if t.Failed() {
				t.Logf("peertest: %s", p.Logs())
			}
		})
		if p.waitBound() || attempt == sippStartAttempts {
			return p
		}
		// Retry only when the taken port is one we picked: a port the caller fixed stays taken.
		switch p.bindFailure() {
		case "control":
		case "sip":
			if !pickLocal {
				return p
			}
		case "media":
			if !pickMedia {
				return p
			}
		default:
			return p
		}
		t.Logf("peertest: sipp could not bind a port it was given (attempt %d), retrying with new ones", attempt)
	}
}

func startSipp(t testing.TB, bin string, o SippOptions) (*SippProc, error) {
	dir := newLogDir(t, "sipp-*")
	cp := freeUDPPortOn(t, o.BindIP)
	ip := o.BindIP.String()
	args := []string{}
	if o.Remote != "" {
		args = append(args, o.Remote)
	}
	args = append(args,
		"-sf", o.Scenario,
		"-t", o.Transport,
		"-i", ip, "-mi", ip, "-bind_local",
		"-p", strconv.Itoa(o.LocalPort),
		"-mp", strconv.Itoa(o.MediaPort),
		"-ci", ip, "-cp", strconv.Itoa(cp),
		"-m", strconv.Itoa(o.Calls),
		"-timeout", strconv.FormatInt(max(o.Timeout.Milliseconds(), 1), 10)+"ms", "-timeout_error",
		"-nostdin",
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"),
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_screen", "-screen_file", filepath.Join(dir, "screen.log"),
		"-trace_logs", "-log_file", filepath.Join(dir, "actions.log"),
	)
	if o.Service != "" {
		args = append(args, "-s", o.Service)
	}
	if o.CallDuration > 0 {
		args = append(args, "-d", strconv.FormatInt(o.CallDuration.Milliseconds(), 10))
	}
	if o.RTPEcho {
		args = append(args, "-rtp_echo")
	}
	for _, k := range slices.Sorted(maps.Keys(o.Vars)) {
		args = append(args, "-key", k, o.Vars[k])
	}
	for _, k := range slices.Sorted(maps.Keys(o.Globals)) {
		args = append(args, "-set", k, o.Globals[k])
	}
	args = append(args, o.ExtraArgs...)

	proc, err := startProcess("sipp", bin, dir, args)
	if err != nil {
		return nil, err
	}
	return &SippProc{
		process:     proc,
		Options:     o,
		SIPAddr:     netip.AddrPortFrom(o.BindIP, uint16(o.LocalPort)),
		MediaAddr:   netip.AddrPortFrom(o.BindIP, uint16(o.MediaPort)),
		ControlPort: cp,
	}, nil
}

// sippReadyTimeout bounds how long sipp may take to bind its sockets; it needs milliseconds.
const sippReadyTimeout = 5 * time.Second

// waitBound waits until sipp has bound its SIP port (UDP, or TCP listening for t1) and, with
// RTPEcho, its media port. It returns false if sipp exited first or did not bind in time.
func (p *SippProc) waitBound() bool {
	network := "udp"
	if p.Options.Transport == "t1" {
		network = "tcp"
	}
	deadline := time.Now().Add(sippReadyTimeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			return false
		}
		if ownsPort(p.Pid(), network, p.Options.LocalPort) &&
			(!p.Options.RTPEcho || ownsPort(p.Pid(), "udp", p.Options.MediaPort)) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// bindFailure tells which socket sipp could not bind when it exited for that reason: "sip"
// (-p, "Unable to bind main socket"), "media" (-mp or -mp+2, "Unable to bind audio RTP socket"),
// "control" (-cp) or "" for any other outcome.
func (p *SippProc) bindFailure() string {
	if !p.exited() || p.exitCode != SippExitFatalBinding {
		return ""
	}
	out := p.logTail("stderr.log", 16<<10)
	switch {
	case strings.Contains(out, "main socket"):
		return "sip"
	case strings.Contains(out, "RTP socket"):
		return "media"
	case strings.Contains(out, "remote control socket"):
		return "control"
	}
	return ""
}

// Dir is the directory holding sipp's logs: messages.log, errors.log, screen.log, actions.log
// (<log> actions), stdout.log and stderr.log.
func (p *SippProc) Dir() string { return p.dir }

// Messages returns the whole SIP message trace so far (-trace_msg).
func (p *SippProc) Messages() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "messages.log"))
	return string(b)
}

// Logs returns what explains a failure: the command line, how sipp ended, and the tails of its
// error log, stderr, final screen and message trace.
func (p *SippProc) Logs() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n(%s; logs in %s)\n", p.commandLine(), p.status(), p.dir)
	for _, f := range []struct {
		name string
		max  int64
	}{
		{"errors.log", 4 << 10},
		{"stderr.log", 2 << 10},
		{"screen.log", 3 << 10},
		{"messages.log", 8 << 10},
	} {
		if s := strings.TrimSpace(p.logTail(f.name, f.max)); s != "" {
			fmt.Fprintf(&b, "--- %s ---\n%s\n", f.name, s)
		}
	}
	return b.String()
}

// RequireSuccess waits up to timeout for sipp to exit and fails the test unless it exited 0
// (every call followed the scenario), showing the logs.
func (p *SippProc) RequireSuccess(t testing.TB, timeout time.Duration) {
	t.Helper()
	p.RequireExit(t, timeout, SippExitSuccess)
}

// RequireExit waits up to timeout for sipp to exit and fails the test unless it exited with
// code, showing the logs.
func (p *SippProc) RequireExit(t testing.TB, timeout time.Duration, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("peertest: %v\n%s", err, p.Logs())
	}
	if got != code {
		t.Fatalf("peertest: sipp exit code %d, want %d\n%s", got, code, p.Logs())
	}
}

// ScenarioPath returns the absolute path of a scenario in the repository's examples/sipp.
func ScenarioPath(name string) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("peertest: cannot locate the source directory")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", "sipp", name)
}

// RenderScenario copies the scenario name from examples/sipp into a temporary directory with
// literal replacements (old, new pairs) for what sipp fixes when it loads a file, such as
// status codes, and returns the copy's path. Each old string must occur in the scenario.
func RenderScenario(t testing.TB, name string, oldNew ...string) string {
	t.Helper()
	if len(oldNew)%2 != 0 {
		t.Fatal("peertest: RenderScenario needs old, new pairs")
	}
	b, err := os.ReadFile(ScenarioPath(name))
	if err != nil {
		t.Fatalf("peertest: %v", err)
	}
	s := string(b)
	for i := 0; i < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			t.Fatalf("peertest: scenario %s has no %q to replace", name, oldNew[i])
		}
		s = strings.ReplaceAll(s, oldNew[i], oldNew[i+1])
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatalf("peertest: %v", err)
	}
	return path
}

// UASRejectScenario is pbx_uas_reject.xml answering with code and reason instead of 603 Decline.
func UASRejectScenario(t testing.TB, code int, reason string) string {
	t.Helper()
	if code < 300 || code > 699 {
		t.Fatalf("peertest: reject code %d is not a final error response", code)
	}
	return RenderScenario(t, "pbx_uas_reject.xml", "SIP/2.0 603 Decline", fmt.Sprintf("SIP/2.0 %d %s", code, reason))
}

// UACRejectScenario is pbx_uac_reject.xml expecting final response code instead of 603.
func UACRejectScenario(t testing.TB, code int) string {
	t.Helper()
	if code < 300 || code > 699 {
		t.Fatalf("peertest: reject code %d is not a final error response", code)
	}
	return RenderScenario(t, "pbx_uac_reject.xml", `response="603"`, fmt.Sprintf(`response="%d"`, code))
}
