package bridge_test

import (
	"io"
	"log/slog"
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// sipgo's own default logger prints transport chatter ("TCP ref went negative" on every TLS
	// teardown, go-libs §1.5.3) to stderr; each test's wabridge logs go to its own buffer instead.
	sipmsg.SetDefaultLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	// Every call, relay, registration and listener must be gone when the tests end (no call
	// leaks goroutines, sockets or ports).
	goleak.VerifyTestMain(m)
}
