package media

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind (relay readers and timers
// must all be gone once Close returns).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
