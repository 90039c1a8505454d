package demo

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"time"

	"github.com/wabridge/wabridge/bridge"
	"github.com/wabridge/wabridge/pbxsim"
	"github.com/wabridge/wabridge/wasim"
)

// signal returns n distinct 20 ms frames. They are shaped like Opus packets (TOC byte of a 20 ms
// CELT frame) and numbered, so the receiving end can tell exactly which frames arrived intact;
// the relay never looks inside a payload, so their content is irrelevant to the bridge.
func signal(n int, stream byte) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		f := make([]byte, 80)
		f[0] = 0x78
		f[1] = stream
		binary.BigEndian.PutUint16(f[2:], uint16(i))
		for j := 4; j < len(f); j++ {
			f[j] = byte(i*7 + j*13 + int(stream))
		}
		out[i] = f
	}
	return out
}

// matched counts how many of want appear, byte for byte, among got.
func matched(want, got [][]byte) int {
	n := 0
	for _, w := range want {
		for _, g := range got {
			if bytes.Equal(w, g) {
				n++
				break
			}
		}
	}
	return n
}

func userInitiated(ctx context.Context, o Options, edge *wasim.Edge, pbx *pbxsim.PBX, srv *bridge.Server, certPEM []byte) (c CallReport) {
	c.Name = "user-initiated"
	defer c.finish()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	start := time.Now()
	call, err := edge.Dial(ctx, wasim.DialOptions{Target: srv.Addrs().WhatsAppTLS, ServerName: SIPHostname,
		RootCAs: roots, Business: Business, User: User})
	if err != nil {
		c.problem("WhatsApp call to the business failed: %v", err)
		return c
	}
	c.SetupMs = ms(time.Since(start))
	var pcall *pbxsim.Call
	select {
	case pcall = <-pbx.Calls():
	case <-ctx.Done():
		c.problem("the PBX never saw the call")
		return c
	}

	playFromWhatsApp(ctx, o, &c, call.Media, pcall)
	if err := call.Hangup(ctx); err != nil {
		c.problem("hanging up from WhatsApp: %v", err)
	}
	c.EndedBy = "WhatsApp user hung up"
	select {
	case <-pcall.Done():
		c.EndedBy += "; PBX leg ended (" + pcall.EndedBy() + ")"
	case <-time.After(5 * time.Second):
		c.problem("the PBX leg did not end after the WhatsApp user hung up")
	}
	return c
}

func businessInitiated(ctx context.Context, o Options, edge *wasim.Edge, pbx *pbxsim.PBX, srv *bridge.Server) (c CallReport) {
	c.Name = "business-initiated"
	defer c.finish()
	start := time.Now()
	pcall, err := pbx.Dial(ctx, pbxsim.DialOptions{Target: srv.Addrs().PBXUDP, User: User, From: "1000",
		Headers: map[string]string{"X-WA-Business-Number": Business}})
	if err != nil {
		c.problem("PBX call to the WhatsApp user failed: %v", err)
		return c
	}
	c.SetupMs = ms(time.Since(start))
	call, err := edge.NextCall(ctx)
	if err != nil {
		c.problem("WhatsApp never saw the call: %v", err)
		return c
	}
	playFromPBX(ctx, o, &c, call.Media, pcall)
	if err := pcall.Hangup(ctx); err != nil {
		c.problem("hanging up from the PBX: %v", err)
	}
	c.EndedBy = "PBX hung up"
	select {
	case <-call.Done():
		c.EndedBy += "; WhatsApp leg ended (" + call.EndedBy() + ")"
	case <-time.After(5 * time.Second):
		c.problem("the WhatsApp leg did not end after the PBX hung up")
	}
	return c
}

// playFromWhatsApp plays the signal and the digits from the WhatsApp side to the echoing PBX
// and measures both directions: what reached the PBX and what came back.
func playFromWhatsApp(ctx context.Context, o Options, c *CallReport, wa wasim.Media, pcall *pbxsim.Call) {
	frames := signal(o.Frames, 1)
	if err := wa.Send(ctx, frames, opusPT, ptime); err != nil {
		c.problem("sending audio from WhatsApp: %v", err)
	}
	for _, d := range o.Digits {
		if err := wa.SendDTMF(ctx, d, metaDTMFPT, 100*time.Millisecond); err != nil {
			c.problem("sending DTMF from WhatsApp: %v", err)
		}
	}
	waitUntil(ctx, 3*time.Second, func() bool {
		return matched(frames, waPayloads(wa.Received())) == len(frames) && wa.ReceivedDTMF() == o.Digits
	})
	c.ToPBX = pbxStream(pcall, frames, o.Digits)
	c.ToWhatsApp = mediaStream(wa, frames, o.Digits) // the PBX echoes what it hears
}

// playFromPBX plays the signal and digits from the PBX to a WhatsApp side that echoes audio.
// The emulated user echoes audio, not key presses, so it sends its own digits.
func playFromPBX(ctx context.Context, o Options, c *CallReport, wa wasim.Media, pcall *pbxsim.Call) {
	wa.Echo(true)
	frames := signal(o.Frames, 2)
	if err := pcall.Media.Send(ctx, frames, pcall.Local.Codecs[0].PT, ptime); err != nil {
		c.problem("sending audio from the PBX: %v", err)
	}
	for _, d := range o.Digits {
		if err := pcall.Media.SendDTMF(ctx, d, pbxDTMFPT, 100*time.Millisecond); err != nil {
			c.problem("sending DTMF from the PBX: %v", err)
		}
	}
	for _, d := range o.Digits {
		if err := wa.SendDTMF(ctx, d, metaDTMFPT, 100*time.Millisecond); err != nil {
			c.problem("sending DTMF from WhatsApp: %v", err)
		}
	}
	waitUntil(ctx, 3*time.Second, func() bool {
		return matched(frames, pbxPayloads(pcall.Media.Received())) == len(frames) && pcall.Media.ReceivedDTMF() == o.Digits
	})
	c.ToWhatsApp = mediaStream(wa, frames, o.Digits)
	c.ToPBX = pbxStream(pcall, frames, o.Digits) // WhatsApp echoes what it hears
}

func waPayloads(pkts []wasim.Packet) [][]byte {
	out := make([][]byte, 0, len(pkts))
	for _, p := range pkts {
		out = append(out, p.Payload)
	}
	return out
}

func pbxPayloads(pkts []pbxsim.Packet) [][]byte {
	out := make([][]byte, 0, len(pkts))
	for _, p := range pkts {
		out = append(out, p.Payload)
	}
	return out
}

func pbxStream(call *pbxsim.Call, frames [][]byte, digits string) Stream {
	st := call.Media.Stats()
	return Stream{FramesSent: len(frames), FramesMatched: matched(frames, pbxPayloads(call.Media.Received())),
		Packets: st.PacketsIn, Bytes: st.BytesIn, Lost: st.Lost, JitterMs: ms(st.Jitter),
		DTMFSent: digits, DTMFReceived: call.Media.ReceivedDTMF()}
}

type seqSample struct {
	seq  uint16
	ts   uint32
	at   time.Time
	dtmf bool
}

// lossJitter computes RFC 3550 loss (A.3, from the extended sequence range) and interarrival
// jitter (§6.4.1) for one stream; telephone-event packets repeat a timestamp on purpose and are
// left out of the jitter.
func lossJitter(pkts []seqSample, clock float64) (lost int64, jitterMs float64) {
	if len(pkts) == 0 {
		return 0, 0
	}
	var cycles int64
	first, prev := int64(pkts[0].seq), pkts[0].seq
	maxExt := first
	var j float64
	var last *seqSample
	for i := range pkts {
		p := &pkts[i]
		if i > 0 && p.seq < prev && prev-p.seq > 0x8000 {
			cycles += 1 << 16
		}
		prev = p.seq
		if ext := cycles + int64(p.seq); ext > maxExt {
			maxExt = ext
		}
		if p.dtmf {
			continue
		}
		if last != nil {
			d := p.at.Sub(last.at).Seconds()*clock - float64(int32(p.ts-last.ts))
			if d < 0 {
				d = -d
			}
			j += (d - j) / 16
		}
		last = p
	}
	lost = maxExt - first + 1 - int64(len(pkts))
	return lost, j / clock * 1000
}

func waitUntil(ctx context.Context, d time.Duration, cond func() bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil && !cond() {
		time.Sleep(20 * time.Millisecond)
	}
}

// mediaStream measures what a WhatsApp-side media peer received.
func mediaStream(m wasim.Media, frames [][]byte, digits string) Stream {
	pkts := m.Received()
	st := m.Stats()
	s := Stream{FramesSent: len(frames), FramesMatched: matched(frames, waPayloads(pkts)),
		Packets: st.PacketsIn, Bytes: st.BytesIn, DTMFSent: digits, DTMFReceived: m.ReceivedDTMF()}
	seqs := make([]seqSample, 0, len(pkts))
	for _, p := range pkts {
		seqs = append(seqs, seqSample{seq: p.Seq, ts: p.TS, at: p.At, dtmf: p.PT == metaDTMFPT})
	}
	s.Lost, s.JitterMs = lossJitter(seqs, 48000)
	return s
}
