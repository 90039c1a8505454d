package bsp

import (
	"sync"
	"time"
)

// Sequencer decides whether a call event still means something given what was seen for the
// same call. Webhooks carry no ordering guarantee (whatsapp-calling.md §3.1): a terminate can
// precede its connect, a connect that timed out can be retried after the terminate, and a
// RINGING can arrive after the ACCEPTED. Acting on such stragglers would ring a PBX for a call
// that is already over. The bridge owns the call state; this helper only remembers, per call id,
// whether the call ended and how far its status got. Safe for concurrent use.
type Sequencer struct {
	mu    sync.Mutex
	calls map[string]*callSeq
	seen  *seenSet // call ids by last event; evicting one drops its record
	now   func() time.Time
}

type callSeq struct {
	connected  bool
	terminated bool
	statusRank int
}

// Sequencer defaults. Meta retries a failed delivery with back-off for up to 7 days ("likely
// shorter" for calling, §3.1), so no TTL covers every straggler; stale connects are caught by
// their age instead (DefaultMaxConnectAge), and the per-call record only has to outlive the
// reordering within one call's life and the retries right after it. 100 000 records are a few MB.
const (
	DefaultSequencerTTL  = 6 * time.Hour
	DefaultSequencerSize = 100000
	// DefaultMaxConnectAge: a user-initiated call must be accepted within 30–60 s (§2.2), after
	// which the caller sees "Not Answered" and a terminate follows; a connect older than this by
	// its own timestamp is a retry of a call that is over. The margin covers clock skew.
	DefaultMaxConnectAge = 2 * time.Minute
)

// NewSequencer returns a Sequencer remembering up to max calls for ttl after their last event.
// Zero values take the defaults.
func NewSequencer(max int, ttl time.Duration) *Sequencer {
	if max <= 0 {
		max = DefaultSequencerSize
	}
	if ttl <= 0 {
		ttl = DefaultSequencerTTL
	}
	s := &Sequencer{calls: make(map[string]*callSeq), seen: newSeenSet(max, ttl), now: time.Now}
	s.seen.onEvict = func(id string) { delete(s.calls, id) }
	return s
}

// statusRank orders a business-initiated call's statuses: each may only move forward.
func statusRank(s string) int {
	switch s {
	case StatusRinging:
		return 1
	case StatusAccepted, StatusRejected:
		return 2
	}
	return 0
}

// Admit reports whether ev should be acted on:
//   - terminate: the first one for the call (later ones are repeats);
//   - connect: the first one, only if the call has not terminated (a connect after its
//     terminate is a stale retry) and not older than DefaultMaxConnectAge;
//   - status: only moving forward (RINGING → ACCEPTED/REJECTED) and only before terminate.
//
// Events without a call id (permission replies) are always admitted.
func (s *Sequencer) Admit(ev Event) bool {
	if ev.CallID == "" {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen.add(ev.CallID, s.now())
	c := s.calls[ev.CallID]
	if c == nil {
		c = &callSeq{}
		s.calls[ev.CallID] = c
	}
	switch ev.Kind {
	case EventTerminate:
		if c.terminated {
			return false
		}
		c.terminated = true
		return true
	case EventConnect:
		if c.terminated || c.connected {
			return false
		}
		if !ev.Timestamp.IsZero() && s.now().Sub(ev.Timestamp) > DefaultMaxConnectAge {
			return false
		}
		c.connected = true
		return true
	case EventStatus:
		r := statusRank(ev.Status)
		if c.terminated || r <= c.statusRank {
			return false
		}
		c.statusRank = r
		return true
	}
	return !c.terminated
}

// Terminated reports whether a terminate was admitted for callID; the bridge can check it before
// starting a call whose connect it received out of band.
func (s *Sequencer) Terminated(callID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen.expire(s.now())
	c := s.calls[callID]
	return c != nil && c.terminated
}
