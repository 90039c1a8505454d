package bridge_test

import (
	"bytes"
	"net/netip"
	"sync"
	"time"

	"github.com/wabridge/wabridge/internal/peertest"
	"github.com/wabridge/wabridge/wasim"
)

// logBuffer collects wabridge's logs; it can be read while calls are still logging.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// audioPayloads returns the payloads of received audio packets with the given payload type,
// leaving out wabridge's silence fill (the 3-byte Opus DTX frame) so what remains is exactly what
// the far side sent.
func audioPayloads(pkts []wasim.Packet, pt uint8) [][]byte {
	var out [][]byte
	for _, p := range pkts {
		if p.PT == pt && !isSilence(p.Payload) {
			out = append(out, p.Payload)
		}
	}
	return out
}

func isSilence(p []byte) bool {
	return bytes.Equal(p, []byte{0xf8, 0xff, 0xfe})
}

// waitFor polls cond until it holds or d passes. Tests bound every wait.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

func netipDiscard() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:9") }

// withSeed keeps the payloads made by peertest.OpusLikePayloads with this seed.
func withSeed(ps [][]byte, seed uint64) [][]byte {
	var out [][]byte
	for _, p := range ps {
		if _, ok := peertest.PayloadIndex(p, seed); ok {
			out = append(out, p)
		}
	}
	return out
}

// replaceSDP returns an offer editor that replaces every old with new.
func replaceSDP(old, new string) func([]byte) []byte {
	return func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(old), []byte(new)) }
}

// dropSDPLines returns an offer editor that removes lines starting with prefix.
func dropSDPLines(prefix string) func([]byte) []byte {
	return func(b []byte) []byte {
		var out []byte
		for _, l := range bytes.SplitAfter(b, []byte("\n")) {
			if !bytes.HasPrefix(l, []byte(prefix)) {
				out = append(out, l...)
			}
		}
		return out
	}
}

// payloadsPT returns every received payload with the given payload type.
func payloadsPT(pkts []wasim.Packet, pt uint8) [][]byte {
	var out [][]byte
	for _, p := range pkts {
		if p.PT == pt {
			out = append(out, p.Payload)
		}
	}
	return out
}
