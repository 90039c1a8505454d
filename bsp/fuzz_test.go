package bsp_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bsp"
)

// webhookSeeds are the documented webhooks; testdata/fuzz/<Fuzz...>/ adds the quirks.
func webhookSeeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, pattern := range []string{"testdata/golden/meta/webhook-*.json", "testdata/golden/positus/webhooks/*.json"} {
		names, err := filepath.Glob(pattern)
		require.NoError(f, err)
		for _, n := range names {
			b, err := os.ReadFile(n)
			require.NoError(f, err)
			out = append(out, b)
		}
	}
	return out
}

// checkEvents holds for whatever a parser accepted.
func checkEvents(t *testing.T, evs []bsp.Event) {
	for _, ev := range evs {
		switch ev.Kind {
		case bsp.EventConnect, bsp.EventTerminate, bsp.EventStatus:
			if strings.TrimSpace(ev.CallID) == "" {
				t.Fatalf("%s event without a call id", ev.Kind)
			}
		case bsp.EventPermissionReply:
			if ev.PermissionReply == nil {
				t.Fatal("permission reply without its content")
			}
		default:
			t.Fatalf("unexpected kind %q", ev.Kind)
		}
		if ev.SDP != "" && (!strings.HasSuffix(ev.SDP, "\r\n") || strings.Count(ev.SDP, "\n") != strings.Count(ev.SDP, "\r\n")) {
			t.Fatalf("SDP not normalized to CRLF: %q", ev.SDP)
		}
		if ev.Status != strings.ToUpper(ev.Status) || ev.Direction != strings.ToUpper(ev.Direction) {
			t.Fatalf("status/direction not upper case: %q %q", ev.Status, ev.Direction)
		}
	}
}

func FuzzParseMetaWebhook(f *testing.F) {
	for _, s := range webhookSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := bsp.ParseMetaWebhook(body)
		if err != nil {
			if len(evs) != 0 {
				t.Fatal("events returned with an error")
			}
			return
		}
		checkEvents(t, evs)
	})
}

func FuzzParsePositusWebhook(f *testing.F) {
	for _, s := range webhookSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := bsp.ParsePositusWebhook(body)
		if err != nil {
			return
		}
		checkEvents(t, evs)
		for _, ev := range evs {
			if ev.PhoneNumberID != "" || ev.DisplayNumber != "" {
				t.Fatal("a bare envelope names no business number; routing must fill it")
			}
		}
	})
}

// FuzzWebhookHandler: whatever arrives, an unsigned or wrongly signed body is never processed,
// the answer is one of the documented statuses, and only events for known numbers reach the
// callback.
func FuzzWebhookHandler(f *testing.F) {
	for _, s := range webhookSeeds(f) {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, body []byte, sign bool) {
		var mu sync.Mutex
		var got []bsp.Event
		h, err := bsp.NewWebhookHandler(bsp.WebhookConfig{
			Provider: bsp.ProviderMeta, AppSecret: appSecret, Known: knownMeta, MaxBodyBytes: 64 << 10,
			OnEvent: func(ev bsp.Event) { mu.Lock(); got = append(got, ev); mu.Unlock() },
			Log:     testLog(),
		})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
		if sign {
			req.Header.Set("X-Hub-Signature-256", bsp.Sign(appSecret, body))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		h.Close()
		switch rec.Code {
		case 200, 400, 413:
			if !sign {
				t.Fatalf("unsigned body answered %d", rec.Code)
			}
		case 401:
			if sign {
				t.Fatal("signed body refused as unsigned")
			}
		default:
			t.Fatalf("unexpected status %d", rec.Code)
		}
		if rec.Code != 200 && len(got) > 0 {
			t.Fatalf("refused delivery (%d) reached the callback", rec.Code)
		}
		for _, ev := range got {
			if !knownMeta(ev.PhoneNumberID, ev.DisplayNumber) {
				t.Fatalf("event for unknown number %q/%q delivered", ev.PhoneNumberID, ev.DisplayNumber)
			}
		}
		checkEvents(t, got)
	})
}
