package opstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/internal/peertest"
	wsip "github.com/wabridge/wabridge/sip"
)

// buildDir holds the wabridge binary built for this package's tests; TestMain removes it.
var buildDir string

func TestMain(m *testing.M) {
	// sipgo's default logger prints transport chatter to stderr; each wabridge instance logs to
	// its own buffer instead (shown when a test fails).
	sipmsg.SetDefaultLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if os.Getenv("OPSTEST_SIPTRACE") != "" {
		// Debugging aid: every SIP message the in-process instances and stubs read or write,
		// and sipgo's own debug log, on stderr.
		sipmsg.SetDefaultLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
		trace := logrus.New()
		trace.SetOutput(os.Stderr)
		trace.SetLevel(logrus.DebugLevel)
		sipmsg.SIPDebugTracer(wsip.NewSIPTracer(logrus.NewEntry(trace)))
		sipmsg.SIPDebug = true
	}
	dir, err := os.MkdirTemp("", "wabridge-opstest-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "opstest:", err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the module's root directory (two levels above this file).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok, "cannot locate the source directory")
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// repoPath is a path inside the repository, from slash-separated parts.
func repoPath(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(repoRoot(t), filepath.FromSlash(rel))
}

func readRepoFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, rel))
	require.NoError(t, err)
	return string(b)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// buildTimeout bounds `go build` of the daemon; a cold build cache takes a minute on CI.
const buildTimeout = 5 * time.Minute

// wabridgeBinary builds ./cmd/wabridge once per test run (plain build: the tests only run its
// command line) and returns the binary's path.
func wabridgeBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		buildPath = filepath.Join(buildDir, "wabridge")
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", buildPath, "./cmd/wabridge")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/wabridge: %w\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return buildPath
}

// runTool runs a program with a deadline and returns its combined output and exit code.
func runTool(t testing.TB, timeout time.Duration, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exitErr) && ctx.Err() == nil:
		return string(out), exitErr.ExitCode()
	default:
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		return "", -1
	}
}

// requireTool is peertest.RequireTool for a program that may live in /usr/sbin, which is not
// in every user's PATH (kamailio, kamcmd).
func requireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return peertest.RequireTool(t, name, pkg)
}

// exampleRTPRange reads media.rtp_port_min and rtp_port_max from examples/wabridge.yaml, which
// documents the defaults: the unit's descriptor limit and the image's EXPOSE must cover them.
func exampleRTPRange(t testing.TB) (lo, hi int) {
	t.Helper()
	y := readRepoFile(t, "examples/wabridge.yaml")
	get := func(key string) int {
		m := regexp.MustCompile(`(?m)^\s+` + key + `:\s*(\d+)`).FindStringSubmatch(y)
		require.NotNil(t, m, "examples/wabridge.yaml has no media.%s", key)
		n, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		return n
	}
	return get("rtp_port_min"), get("rtp_port_max")
}

// defaultDrainTimeout is the drain timeout the unit's TimeoutStopSec must exceed when
// examples/wabridge.yaml does not document one (a "drain_timeout:" key) yet.
const defaultDrainTimeout = 60 * time.Second

func exampleDrainTimeout(t testing.TB) time.Duration {
	t.Helper()
	y := readRepoFile(t, "examples/wabridge.yaml")
	m := regexp.MustCompile(`(?m)^\s+drain_timeout:\s*([0-9a-z.]+)`).FindStringSubmatch(y)
	if m == nil {
		return defaultDrainTimeout
	}
	d, err := time.ParseDuration(m[1])
	require.NoError(t, err, "drain_timeout in examples/wabridge.yaml")
	return d
}

// sipHeaderNames lists the X-WA-* header names the bridge's PBX leg uses (string literals in
// bridge/*.go), so the PBX kits cannot drift from what wabridge sends and reads.
func sipHeaderNames(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(repoPath(t, "bridge/*.go"))
	require.NoError(t, err)
	re := regexp.MustCompile(`"(X-WA-[A-Za-z-]+)"`)
	seen := map[string]bool{}
	var names []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		fh, err := os.Open(f)
		require.NoError(t, err)
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			for _, m := range re.FindAllStringSubmatch(sc.Text(), -1) {
				if !seen[m[1]] {
					seen[m[1]] = true
					names = append(names, m[1])
				}
			}
		}
		fh.Close()
		require.NoError(t, sc.Err())
	}
	require.NotEmpty(t, names, "no X-WA-* header names found in bridge/")
	return names
}
