package pbxsim

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	wsip "github.com/wabridge/wabridge/sip"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// testLog is quiet unless PBXSIM_DEBUG is set: sipgo v1.7.2 warns about connection refcounts
// on every teardown (go-libs.md §1.5 item 3), which is noise here.
var testLog = func() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetLevel(logrus.ErrorLevel)
	if os.Getenv("PBXSIM_DEBUG") != "" {
		l.SetLevel(logrus.DebugLevel)
	}
	return logrus.NewEntry(l)
}()

// TestMain fails the package if a test leaves a goroutine behind: Close must wait for every
// handler, dial, media reader and timer of ours, and sipgo's must be gone once its UA is closed.
func TestMain(m *testing.M) {
	// Whatever sipgo logs through its package default (before our options reach it).
	sip.SetDefaultLogger(wsip.NewSlogLogger(testLog.WithField("component", "sipgo-default")))
	goleak.VerifyTestMain(m)
}

// newPBX starts a PBX on loopback with OS ports and closes it when the test ends.
func newPBX(t *testing.T, cfg Config) *PBX {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = testLog.WithField("test", t.Name())
	}
	p, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background()))
	t.Cleanup(p.Close)
	return p
}

// answering returns a policy that always answers a.
func answering(a Answer) func(Incoming) Answer {
	return func(Incoming) Answer { return a }
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// nextCall waits for p's next incoming call.
func nextCall(t *testing.T, p *PBX) *Call {
	t.Helper()
	select {
	case c := <-p.Calls():
		return c
	case <-time.After(testTimeout):
		t.Fatal("no incoming call")
		return nil
	}
}

// waitDone waits for c to end and returns why.
func waitDone(t *testing.T, c *Call) string {
	t.Helper()
	select {
	case <-c.Done():
		return c.EndedBy()
	case <-time.After(testTimeout):
		t.Fatalf("call %s did not end", c.CallID)
		return ""
	}
}
