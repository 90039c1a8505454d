package bsp_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/wabridge/wabridge/bsp"
)

func TestSequencer(t *testing.T) {
	t.Parallel()
	ev := func(id string, kind bsp.EventKind, status string) bsp.Event {
		return bsp.Event{CallID: id, Kind: kind, Status: status}
	}
	cases := []struct {
		name  string
		steps []bsp.Event
		want  []bool
	}{
		{"in order", []bsp.Event{ev("a", bsp.EventConnect, ""), ev("a", bsp.EventStatus, bsp.StatusRinging), ev("a", bsp.EventStatus, bsp.StatusAccepted), ev("a", bsp.EventTerminate, bsp.StatusCompleted)},
			[]bool{true, true, true, true}},
		{"terminate before connect", []bsp.Event{ev("a", bsp.EventTerminate, bsp.StatusCompleted), ev("a", bsp.EventConnect, "")},
			[]bool{true, false}},
		{"connect retried after terminate", []bsp.Event{ev("a", bsp.EventConnect, ""), ev("a", bsp.EventTerminate, ""), ev("a", bsp.EventConnect, "")},
			[]bool{true, true, false}},
		{"ringing after accepted", []bsp.Event{ev("a", bsp.EventStatus, bsp.StatusAccepted), ev("a", bsp.EventStatus, bsp.StatusRinging)},
			[]bool{true, false}},
		{"status after terminate", []bsp.Event{ev("a", bsp.EventTerminate, ""), ev("a", bsp.EventStatus, bsp.StatusRejected)},
			[]bool{true, false}},
		{"second terminate", []bsp.Event{ev("a", bsp.EventTerminate, ""), ev("a", bsp.EventTerminate, "")},
			[]bool{true, false}},
		{"calls are independent", []bsp.Event{ev("a", bsp.EventTerminate, ""), ev("b", bsp.EventConnect, "")},
			[]bool{true, true}},
		{"permission replies pass", []bsp.Event{{Kind: bsp.EventPermissionReply}, {Kind: bsp.EventPermissionReply}},
			[]bool{true, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := bsp.NewSequencer(0, 0)
			for i, e := range tc.steps {
				assert.Equal(t, tc.want[i], s.Admit(e), "step %d", i)
			}
		})
	}
	t.Run("stale connect", func(t *testing.T) {
		t.Parallel()
		s := bsp.NewSequencer(0, 0)
		old := bsp.Event{CallID: "a", Kind: bsp.EventConnect, Timestamp: time.Now().Add(-10 * time.Minute)}
		assert.False(t, s.Admit(old), "a connect ten minutes old is a retry of a call that is over")
		fresh := bsp.Event{CallID: "b", Kind: bsp.EventConnect, Timestamp: time.Now().Add(-5 * time.Second)}
		assert.True(t, s.Admit(fresh))
	})
	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		s := bsp.NewSequencer(10, 0)
		s.Admit(ev("old", bsp.EventTerminate, ""))
		assert.True(t, s.Terminated("old"))
		for i := range 10 {
			s.Admit(ev(fmt.Sprint(i), bsp.EventConnect, ""))
		}
		assert.False(t, s.Terminated("old"), "evicted by newer calls")
	})
}
