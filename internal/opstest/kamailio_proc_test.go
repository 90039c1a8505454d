package opstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Kamailio runs examples/kamailio/kamailio.cfg unmodified: the file's #!define settings are
// overridden on the command line (-A), as an operator would, so the test exercises the file
// that ships. Only the dispatcher list is generated.

const (
	kamailioCfg = "examples/kamailio/kamailio.cfg"
	kamailioPkg = "kamailio" // Debian package with kamailio and kamcmd
	// testFRTimer is how long Kamailio waits for an instance's first reply before trying the
	// next one (FR_TIMER; 2 s in the example). wabridge answers 100 Trying at once.
	testFRTimer = time.Second
	// kamailioReadyTimeout bounds Kamailio's start-up (it needs well under a second).
	kamailioReadyTimeout = 10 * time.Second
	kamailioStopTimeout  = 5 * time.Second
)

// kamailio is one Kamailio process owned by a test.
type kamailio struct {
	addr    netip.AddrPort // SIP listener (UDP)
	bin     string
	logPath string
	ctl     string // kamcmd socket
	cmd     *exec.Cmd
	done    chan struct{}
}

// kamailioOptions are the settings the test overrides.
type kamailioOptions struct {
	port      int              // SIP port on 127.0.0.1
	instances []netip.AddrPort // dispatcher set 1, in order
	pbx       netip.AddrPort   // PBX_IP and PBX_PORT
}

var errKamailioBind = errors.New("kamailio could not bind its SIP port")

// startKamailio starts Kamailio and waits until it answers OPTIONS. It returns errKamailioBind
// when the port was taken in the meantime, so the caller can retry with another.
func startKamailio(t testing.TB, o kamailioOptions) (*kamailio, error) {
	t.Helper()
	bin := requireTool(t, "kamailio", kamailioPkg)
	dir := t.TempDir()
	// The ctl socket path must fit in sun_path (108 bytes); t.TempDir() paths can be longer.
	run, err := os.MkdirTemp("", "kam-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(run) })

	var list strings.Builder
	list.WriteString("# setid destination flags priority attrs\n")
	for i, in := range o.instances {
		fmt.Fprintf(&list, "1 sip:%s 0 0 duid=instance-%d\n", in, i)
	}
	listPath := filepath.Join(dir, "dispatcher.list")
	require.NoError(t, os.WriteFile(listPath, []byte(list.String()), 0o644))

	k := &kamailio{
		addr:    netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(o.port)),
		bin:     bin,
		logPath: filepath.Join(dir, "kamailio.log"),
		ctl:     filepath.Join(run, "kamailio_ctl"),
		done:    make(chan struct{}),
	}
	logFile, err := os.Create(k.logPath)
	require.NoError(t, err)
	args := []string{
		"-f", repoPath(t, kamailioCfg),
		"-DD", "-E", // foreground, log to stderr
		"-m", "64", "-M", "8",
		"-Y", run, "-P", filepath.Join(run, "kamailio.pid"),
		"-A", fmt.Sprintf("SIP_LISTEN=udp:%s", k.addr),
		"-A", fmt.Sprintf("PBX_IP=%q", o.pbx.Addr().String()),
		"-A", fmt.Sprintf("PBX_PORT=%q", strconv.Itoa(int(o.pbx.Port()))),
		"-A", fmt.Sprintf("DISPATCHER_LIST=%q", listPath),
		"-A", "DS_PING_INTERVAL=1",
		"-A", fmt.Sprintf("FR_TIMER=%d", testFRTimer.Milliseconds()),
		"-A", "CHILDREN=2",
	}
	k.cmd = exec.Command(bin, args...)
	k.cmd.Dir = dir
	k.cmd.Stdout = logFile
	k.cmd.Stderr = logFile
	// Its own process group: Kamailio forks workers, and stop() takes them all down.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, k.cmd.Start())
	go func() {
		_ = k.cmd.Wait()
		logFile.Close()
		close(k.done)
	}()
	t.Cleanup(func() {
		k.stop(t)
		if t.Failed() {
			t.Logf("kamailio %s\n--- kamailio log ---\n%s", strings.Join(args, " "), tailString(k.log(), 80))
		}
	})

	deadline := time.Now().Add(kamailioReadyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-k.done:
			if strings.Contains(k.log(), "Address already in use") { // udp_init(): bind(...) failed
				return nil, errKamailioBind
			}
			t.Fatalf("kamailio exited at start-up:\n%s", tailString(k.log(), 40))
		default:
		}
		if _, err := sipOptions(k.addr, 200*time.Millisecond); err == nil {
			return k, nil
		}
	}
	t.Fatalf("kamailio did not answer OPTIONS within %s:\n%s", kamailioReadyTimeout, tailString(k.log(), 40))
	return nil, nil
}

// stop sends SIGTERM to Kamailio's process group (the main process then stops its workers),
// and SIGKILL if it is still there after kamailioStopTimeout.
func (k *kamailio) stop(t testing.TB) {
	select {
	case <-k.done:
		return
	default:
	}
	_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(kamailioStopTimeout):
		t.Errorf("kamailio did not stop within %s of SIGTERM; killing it", kamailioStopTimeout)
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		<-k.done
	}
	// Workers may outlive the main process for a moment; leave none behind.
	_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
}

func (k *kamailio) log() string {
	b, _ := os.ReadFile(k.logPath)
	return string(b)
}

// dispatched returns the instance each INVITE from the PBX was sent to first, in order, from
// the config's "wabridge-lb: INVITE <user> from the PBX -> <uri>" log lines.
func (k *kamailio) dispatched() []string {
	re := regexp.MustCompile(`wabridge-lb: INVITE \S+ from the PBX -> sip:(\S+)`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(k.log(), -1) {
		out = append(out, m[1])
	}
	return out
}

// dispatcherFlags asks Kamailio (kamcmd dispatcher.list) for each destination's state flags:
// "AP" active and probed, "IP" inactive and probing, "AX" active and not probed yet.
func (k *kamailio) dispatcherFlags(t testing.TB) map[string]string {
	t.Helper()
	kamcmd := requireTool(t, "kamcmd", kamailioPkg)
	out, code := runTool(t, 10*time.Second, kamcmd, "-s", "unix:"+k.ctl, "dispatcher.list")
	require.Equal(t, 0, code, "kamcmd dispatcher.list:\n%s", out)
	flags := map[string]string{}
	uri := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "URI:":
			uri = strings.TrimPrefix(f[1], "sip:")
		case len(f) == 2 && f[0] == "FLAGS:" && uri != "":
			flags[uri] = f[1]
		}
	}
	return flags
}

// sipOptions sends an out-of-dialog OPTIONS to addr and returns the status code of the answer.
func sipOptions(addr netip.AddrPort, timeout time.Duration) (int, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	tag := hex.EncodeToString(id)
	msg := "OPTIONS sip:" + addr.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + tag + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:opstest@" + local + ">;tag=" + tag + "\r\n" +
		"To: <sip:" + addr.String() + ">\r\n" +
		"Call-ID: " + tag + "@opstest\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := conn.WriteToUDPAddrPort([]byte(msg), addr); err != nil {
		return 0, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		return 0, err
	}
	status, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	f := strings.Fields(status)
	if len(f) < 2 || f[0] != "SIP/2.0" {
		return 0, fmt.Errorf("not a SIP response: %q", status)
	}
	return strconv.Atoi(f[1])
}

func tailString(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
