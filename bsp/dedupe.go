package bsp

import (
	"container/list"
	"time"
)

// seenSet remembers recent delivery keys, bounded both in count (least recently added go first)
// and in age. Providers retry a webhook until it is answered 200, immediately and then with
// back-off (whatsapp-calling.md §3.1); the TTL only has to cover the retries that can still
// matter to a live call, while the size bound keeps memory flat under a flood. Not safe for
// concurrent use; the handler holds its lock.
type seenSet struct {
	ttl     time.Duration
	max     int
	order   *list.List // of seenEntry, oldest at the front
	byKey   map[string]*list.Element
	onEvict func(key string) // optional; called for keys dropped by age or count
}

type seenEntry struct {
	key string
	at  time.Time
}

func newSeenSet(max int, ttl time.Duration) *seenSet {
	return &seenSet{ttl: ttl, max: max, order: list.New(), byKey: make(map[string]*list.Element)}
}

// contains reports whether key was added within the TTL.
func (s *seenSet) contains(key string, now time.Time) bool {
	s.expire(now)
	_, ok := s.byKey[key]
	return ok
}

// add records key, evicting the oldest entry when full.
func (s *seenSet) add(key string, now time.Time) {
	s.expire(now)
	if el, ok := s.byKey[key]; ok {
		// Refreshed, not evicted: no onEvict.
		delete(s.byKey, key)
		s.order.Remove(el)
	}
	s.byKey[key] = s.order.PushBack(seenEntry{key: key, at: now})
	for s.order.Len() > s.max {
		s.remove(s.order.Front())
	}
}

func (s *seenSet) expire(now time.Time) {
	for el := s.order.Front(); el != nil && now.Sub(el.Value.(seenEntry).at) > s.ttl; el = s.order.Front() {
		s.remove(el)
	}
}

func (s *seenSet) remove(el *list.Element) {
	key := el.Value.(seenEntry).key
	delete(s.byKey, key)
	s.order.Remove(el)
	if s.onEvict != nil {
		s.onEvict(key)
	}
}

func (s *seenSet) len() int { return s.order.Len() }
