package demo

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is what a demo (or selftest) run found. It marshals to the JSON `--json` prints.
type Report struct {
	Mode     string       `json:"mode"`          // e.g. "sip+sdes"
	Provider string       `json:"provider"`      // the WhatsApp side emulated
	PBX      string       `json:"pbx,omitempty"` // selftest: the PBX trunk tested
	Calls    []CallReport `json:"calls"`
	OK       bool         `json:"ok"` // every call carried audio both ways
}

// CallReport describes one call.
type CallReport struct {
	Name       string   `json:"name"` // user-initiated or business-initiated
	SetupMs    float64  `json:"setup_ms"`
	ToPBX      Stream   `json:"to_pbx"`      // WhatsApp → PBX
	ToWhatsApp Stream   `json:"to_whatsapp"` // PBX → WhatsApp
	EndedBy    string   `json:"ended_by"`
	OK         bool     `json:"ok"`
	Problems   []string `json:"problems,omitempty"`
}

// Stream is one direction of a call's audio.
type Stream struct {
	FramesSent    int     `json:"frames_sent"`    // signal frames the sender played
	FramesMatched int     `json:"frames_matched"` // of those, how many arrived byte-identical
	Packets       uint64  `json:"packets"`        // RTP packets received, silence fill included
	Bytes         uint64  `json:"bytes"`          // their payload bytes
	Lost          int64   `json:"lost"`           // from sequence numbers (RFC 3550 A.3)
	JitterMs      float64 `json:"jitter_ms"`      // RFC 3550 §6.4.1 interarrival jitter
	DTMFSent      string  `json:"dtmf_sent"`
	DTMFReceived  string  `json:"dtmf_received"`
}

func (s Stream) flowed() bool { return s.FramesSent > 0 && s.FramesMatched == s.FramesSent }

// WriteText prints the report for a person at a terminal.
func (r *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	if r.PBX != "" {
		fmt.Fprintf(&b, "wabridge selftest — %s, WhatsApp side: %s emulator, PBX trunk: %s\n\n", r.Mode, r.Provider, r.PBX)
	} else {
		fmt.Fprintf(&b, "wabridge demo — %s, WhatsApp side: %s emulator, PBX: simulated echo\n\n", r.Mode, r.Provider)
	}
	for _, c := range r.Calls {
		status := "OK"
		if !c.OK {
			status = "FAILED"
		}
		fmt.Fprintf(&b, "%-20s %s  setup %.0f ms, ended by %s\n", c.Name, status, c.SetupMs, c.EndedBy)
		for _, d := range []struct {
			name string
			s    Stream
		}{{"WhatsApp → PBX", c.ToPBX}, {"PBX → WhatsApp", c.ToWhatsApp}} {
			fmt.Fprintf(&b, "  %-15s %3d/%-3d frames intact, %4d packets, %6d bytes, lost %d, jitter %.1f ms, DTMF sent %q seen %q\n",
				d.name, d.s.FramesMatched, d.s.FramesSent, d.s.Packets, d.s.Bytes, d.s.Lost, d.s.JitterMs, d.s.DTMFSent, d.s.DTMFReceived)
		}
		for _, p := range c.Problems {
			fmt.Fprintf(&b, "  problem: %s\n", p)
		}
	}
	if r.OK {
		b.WriteString("\nAudio flowed both ways on every call.\n")
	} else {
		b.WriteString("\nAt least one call did not carry audio both ways.\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

func (c *CallReport) problem(format string, args ...any) {
	c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
}

// finish decides OK from what was measured.
func (c *CallReport) finish() {
	if !c.ToPBX.flowed() {
		c.problem("WhatsApp → PBX: %d of %d frames arrived intact", c.ToPBX.FramesMatched, c.ToPBX.FramesSent)
	}
	if !c.ToWhatsApp.flowed() {
		c.problem("PBX → WhatsApp: %d of %d frames arrived intact", c.ToWhatsApp.FramesMatched, c.ToWhatsApp.FramesSent)
	}
	for _, s := range []Stream{c.ToPBX, c.ToWhatsApp} {
		if s.DTMFSent != "" && !strings.Contains(s.DTMFReceived, s.DTMFSent) {
			c.problem("DTMF %q sent, %q received", s.DTMFSent, s.DTMFReceived)
		}
	}
	c.OK = len(c.Problems) == 0
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
