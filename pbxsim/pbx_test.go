package pbxsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/media"
)

const (
	waUser         = "+15551234567"
	businessNumber = "+15550001111"
)

// payloads returns n distinct payloads of varying length, so a reordered, truncated or
// rewritten echo cannot pass for the original.
func payloads(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		p := make([]byte, 20+i%7*10)
		for j := range p {
			p[j] = byte(i*31 + j*7)
		}
		out[i] = p
	}
	return out
}

func payloadsOf(pkts []Packet, pt uint8) [][]byte {
	var out [][]byte
	for _, p := range pkts {
		if p.PT == pt {
			out = append(out, p.Payload)
		}
	}
	return out
}

func TestDialEchoAndDTMF(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee := newPBX(t, Config{Answer: answering(Answer{RingFor: 50 * time.Millisecond, Echo: true})})
	caller := newPBX(t, Config{})

	out, err := caller.Dial(ctx, DialOptions{
		Target: callee.Addr(), User: waUser, From: "1001",
		Headers: map[string]string{"X-WA-Business-Number": businessNumber},
	})
	require.NoError(t, err)
	in := nextCall(t, callee)
	<-in.Answered()

	// What the callee saw of the INVITE.
	assert.Equal(t, out.CallID, in.CallID)
	assert.Equal(t, waUser, in.RequestUser)
	assert.Equal(t, waUser, in.To)
	assert.Equal(t, "1001", in.From)
	assert.Equal(t, businessNumber, in.Header("x-wa-business-number"), "lookup is case-insensitive")
	assert.Equal(t, businessNumber, in.Header("X-WA-Business-Number"))
	assert.False(t, in.Outgoing)
	assert.True(t, out.Outgoing)

	// Negotiation: opus and telephone-event on the offer's payload types, plain RTP/AVP.
	require.NotNil(t, out.Remote)
	assert.Equal(t, media.ProtoRTPAVP, out.Remote.Proto)
	assert.Equal(t, DefaultCodecs(), out.Remote.Codecs)
	assert.Equal(t, in.Media.LocalAddr(), out.Remote.RTPAddr())
	assert.Equal(t, out.Media.LocalAddr(), in.Media.RemoteAddr())
	assert.Equal(t, in.Media.LocalAddr(), out.Media.RemoteAddr())

	// Echo: every payload comes back byte for byte, in order, on our stream's own numbering.
	sent := payloads(25)
	require.NoError(t, out.Media.Send(ctx, sent, defaultOpusPT, 10*time.Millisecond))
	require.NoError(t, out.Media.WaitReceived(ctx, len(sent)))
	assert.Equal(t, sent, payloadsOf(in.Media.Received(), defaultOpusPT), "callee received what was sent")
	echoed := out.Media.Received()
	assert.Equal(t, sent, payloadsOf(echoed, defaultOpusPT), "echo is byte-identical")
	for i := 1; i < len(echoed); i++ {
		assert.Equal(t, echoed[0].SSRC, echoed[i].SSRC)
		assert.Equal(t, echoed[i-1].Seq+1, echoed[i].Seq, "echo numbers its own packets")
		assert.Equal(t, echoed[i-1].TS+480, echoed[i].TS, "echo keeps the sender's spacing (10 ms at 48 kHz)")
	}
	assert.Equal(t, in.Media.SSRC(), echoed[0].SSRC, "echo sends with the callee's SSRC")
	assert.True(t, echoed[0].Marker, "marker of the talkspurt's first packet is echoed")

	// DTMF: RFC 4733 events reach the callee, and the echo carries them back.
	for _, d := range "12#" {
		require.NoError(t, out.Media.SendDTMF(ctx, d, defaultDTMFPT, 60*time.Millisecond))
	}
	require.Eventually(t, func() bool { return in.Media.ReceivedDTMF() == "12#" }, testTimeout, 5*time.Millisecond,
		"callee digits: %q", in.Media.ReceivedDTMF())
	require.Eventually(t, func() bool { return out.Media.ReceivedDTMF() == "12#" }, testTimeout, 5*time.Millisecond,
		"echoed digits: %q", out.Media.ReceivedDTMF())

	const total = 25 + 3*(3+3) // 25 audio + 3 digits × (3 event + 3 end packets)
	require.NoError(t, in.Media.WaitReceived(ctx, total))
	require.NoError(t, out.Media.WaitReceived(ctx, total))
	st := in.Media.Stats()
	assert.EqualValues(t, 0, st.Lost)
	assert.EqualValues(t, total, st.PacketsIn)
	assert.Equal(t, st.PacketsIn, st.Expected)
	assert.False(t, st.FirstAt.IsZero())
	assert.Less(t, st.Jitter, 20*time.Millisecond)
	assert.Equal(t, out.Media.Stats().PacketsOut, st.PacketsIn)

	require.NoError(t, out.Hangup(ctx))
	assert.Equal(t, EndedLocalBye, waitDone(t, out))
	assert.Equal(t, EndedRemoteBye, waitDone(t, in))
	assert.NoError(t, out.Hangup(ctx), "hanging up an ended call is a no-op")
}

func TestDialBusy(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee := newPBX(t, Config{Answer: answering(Answer{Code: 486, RingFor: 20 * time.Millisecond, Warning: "all lines busy"})})
	caller := newPBX(t, Config{})

	c, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
	require.Nil(t, c)
	var ce *CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 486, ce.Code)
	assert.Equal(t, "Busy Here", ce.Reason)
	assert.Equal(t, "all lines busy", ce.Warning)

	in := nextCall(t, callee)
	assert.Equal(t, EndedRejected, waitDone(t, in))
	assert.Nil(t, in.Media)
}

func TestDialCancelBeforeAnswer(t *testing.T) {
	t.Parallel()
	callee := newPBX(t, Config{Answer: answering(Answer{RingFor: time.Minute})})
	caller := newPBX(t, Config{})

	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
		errc <- err
	}()
	in := nextCall(t, callee)
	time.Sleep(50 * time.Millisecond) // let the 180 go out: a CANCEL is for a ringing call
	cancel()

	var err error
	select {
	case err = <-errc:
	case <-time.After(testTimeout):
		t.Fatal("Dial did not return after cancel")
	}
	var ce *CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 487, ce.Code)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, EndedRemoteCancel, waitDone(t, in))
}

// TestDialDeadPeer: a target that never answers must not hold Dial beyond its context (plus the
// short grace for a late 100 Trying).
func TestDialDeadPeer(t *testing.T) {
	t.Parallel()
	caller := newPBX(t, Config{})
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer dead.Close()

	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = caller.Dial(ctx, DialOptions{Target: netip.MustParseAddrPort(dead.LocalAddr().String()), User: waUser})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 100*time.Millisecond+noResponseGrace+time.Second)
}

func TestHangupAfter(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee := newPBX(t, Config{Answer: answering(Answer{HangupAfter: 100 * time.Millisecond, Echo: true})})
	caller := newPBX(t, Config{})

	out, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
	require.NoError(t, err)
	in := nextCall(t, callee)
	assert.Equal(t, EndedRemoteBye, waitDone(t, out))
	assert.Equal(t, EndedLocalBye, waitDone(t, in))
	assert.ErrorIs(t, out.Media.Send(ctx, payloads(1), defaultOpusPT, 0), ErrMediaClosed)
}

func TestHangupWhileRinging(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee := newPBX(t, Config{Answer: answering(Answer{RingFor: time.Minute})})
	caller := newPBX(t, Config{})

	errc := make(chan error, 1)
	go func() {
		_, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
		errc <- err
	}()
	in := nextCall(t, callee)
	require.NoError(t, in.Hangup(ctx))
	assert.Equal(t, EndedRejected, in.EndedBy())

	var ce *CallError
	require.ErrorAs(t, <-errc, &ce)
	assert.Equal(t, 603, ce.Code)
}

func TestNoMedia(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee := newPBX(t, Config{Answer: answering(Answer{NoMedia: true, Echo: true, Play: payloads(5)})})
	caller := newPBX(t, Config{})

	out, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
	require.NoError(t, err)
	in := nextCall(t, callee)

	// The SDP is normal: the failure is only in the media.
	require.NotNil(t, out.Remote)
	assert.NotZero(t, out.Remote.Port)
	assert.Equal(t, media.DirSendRecv, out.Remote.Direction)

	require.NoError(t, out.Media.Send(ctx, payloads(10), defaultOpusPT, 5*time.Millisecond))
	require.NoError(t, in.Media.WaitReceived(ctx, 10))
	time.Sleep(150 * time.Millisecond) // enough for an echo or the 5 played packets to arrive
	assert.Zero(t, out.Media.Stats().PacketsIn, "nothing comes back")
	assert.Zero(t, in.Media.Stats().PacketsOut)
	require.NoError(t, out.Hangup(ctx))
	waitDone(t, in)
}

func TestAnswerCodecsPCMUOnly(t *testing.T) {
	t.Parallel()
	callee := newPBX(t, Config{Answer: answering(Answer{Codecs: []media.Codec{PCMU()}, Echo: true})})
	caller := newPBX(t, Config{})

	t.Run("offered", func(t *testing.T) {
		ctx := testCtx(t)
		offer := append(DefaultCodecs(), PCMU())
		out, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser, Codecs: offer})
		require.NoError(t, err)
		in := nextCall(t, callee)
		assert.Equal(t, []media.Codec{PCMU()}, out.Remote.Codecs, "answer lists PCMU() only, no telephone-event")
		assert.Equal(t, out.Remote.Codecs, in.Local.Codecs)

		ulaw := [][]byte{make([]byte, 160), make([]byte, 160)}
		ulaw[0][0], ulaw[1][0] = 0xff, 0x7f
		require.NoError(t, out.Media.Send(ctx, ulaw, PCMU().PT, 0))
		require.NoError(t, out.Media.WaitReceived(ctx, 2))
		assert.Equal(t, ulaw, payloadsOf(out.Media.Received(), PCMU().PT))
		require.NoError(t, out.Hangup(ctx))
		waitDone(t, in)
	})

	t.Run("not offered", func(t *testing.T) {
		// The misconfigured PBX answers PCMU() to an Opus-only offer, breaking RFC 3264 §6.1: the
		// case wabridge must catch.
		ctx := testCtx(t)
		out, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
		require.NoError(t, err)
		in := nextCall(t, callee)
		assert.Equal(t, []media.Codec{PCMU()}, out.Remote.Codecs)
		require.NoError(t, out.Hangup(ctx))
		waitDone(t, in)
	})
}

func TestNoCommonCodec(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee := newPBX(t, Config{Codecs: []media.Codec{PCMU()}})
	caller := newPBX(t, Config{})

	_, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
	var ce *CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 488, ce.Code)
	assert.Contains(t, ce.Warning, "no common codec")
	assert.Equal(t, EndedRejected, waitDone(t, nextCall(t, callee)))
}

func TestPlay(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	play := payloads(8)
	callee := newPBX(t, Config{Answer: answering(Answer{Play: play})})
	caller := newPBX(t, Config{})

	out, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
	require.NoError(t, err)
	require.NoError(t, out.Media.WaitReceived(ctx, len(play)))
	got := out.Media.Received()
	assert.Equal(t, play, payloadsOf(got, defaultOpusPT))
	assert.Equal(t, got[0].TS+7*960, got[7].TS, "20 ms apart at 48 kHz")
	require.NoError(t, out.Hangup(ctx))
}

// TestInDialogRequests sends a re-INVITE and an UPDATE in the dialog, and an OPTIONS and a
// REGISTER outside.
func TestInDialogRequests(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee := newPBX(t, Config{Answer: answering(Answer{Echo: true})})
	caller := newPBX(t, Config{})

	out, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
	require.NoError(t, err)
	in := nextCall(t, callee)

	contact := out.uac.InviteResponse.Contact().Address
	// A re-INVITE that moves our media: answered with the same SDP, and the callee follows.
	moved := *out.Local
	moved.Port = 9 // discard
	reinvite := sip.NewRequest(sip.INVITE, contact)
	reinvite.SetBody(moved.Marshal())
	reinvite.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res, err := out.uac.Do(ctx, reinvite)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	assert.Equal(t, in.localSDP, res.Body(), "re-INVITE is answered with the same SDP")
	require.NoError(t, out.uac.WriteRequest(sip.NewRequest(sip.ACK, contact)))
	assert.EqualValues(t, 9, in.Media.RemoteAddr().Port())

	// An UPDATE with the original SDP moves it back; one without SDP is a session refresh.
	update := sip.NewRequest(sip.UPDATE, contact)
	update.SetBody(out.localSDP)
	update.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res, err = out.uac.Do(ctx, update)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	assert.Equal(t, in.localSDP, res.Body())
	assert.Equal(t, out.Media.LocalAddr(), in.Media.RemoteAddr())
	res, err = out.uac.Do(ctx, sip.NewRequest(sip.UPDATE, contact))
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	assert.Empty(t, res.Body())

	opts := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: callee.Addr().Addr().String(), Port: int(callee.Addr().Port())})
	res, err = caller.udpDUA.Client.Do(ctx, opts)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	assert.Contains(t, res.GetHeader("Allow").Value(), "INVITE")

	reg := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: callee.Addr().Addr().String(), Port: int(callee.Addr().Port())})
	reg.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "wabridge", Host: "127.0.0.1", Port: 5060}})
	reg.AppendHeader(sip.NewHeader("Expires", "120"))
	res, err = caller.udpDUA.Client.Do(ctx, reg, sipgo.ClientRequestRegisterBuild)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	require.NotNil(t, res.Contact())
	assert.Equal(t, "120", res.Contact().Params.GetOr("expires", ""))

	// The call survived all that, media included.
	require.NoError(t, out.Media.Send(ctx, payloads(3), defaultOpusPT, 0))
	require.NoError(t, out.Media.WaitReceived(ctx, 3))
	assert.Empty(t, in.EndedBy())
	require.NoError(t, in.Hangup(ctx), "the callee can hang up too")
	assert.Equal(t, EndedRemoteBye, waitDone(t, out))
}

func TestDialTCP(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee := newPBX(t, Config{ListenTCP: "127.0.0.1:0", Answer: answering(Answer{Echo: true})})
	caller := newPBX(t, Config{ListenTCP: "127.0.0.1:0"})
	require.True(t, callee.TCPAddr().IsValid())

	out, err := caller.Dial(ctx, DialOptions{Target: callee.TCPAddr(), User: waUser, Transport: "tcp"})
	require.NoError(t, err)
	in := nextCall(t, callee)
	require.NoError(t, out.Media.Send(ctx, payloads(3), defaultOpusPT, 0))
	require.NoError(t, out.Media.WaitReceived(ctx, 3))
	require.NoError(t, in.Hangup(ctx))
	assert.Equal(t, EndedRemoteBye, waitDone(t, out))
}

func TestCloseEndsCalls(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee, err := New(Config{Log: testLog, Answer: answering(Answer{Echo: true})})
	require.NoError(t, err)
	require.NoError(t, callee.Start(ctx))
	caller := newPBX(t, Config{})

	out, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
	require.NoError(t, err)
	in := nextCall(t, callee)
	callee.Close()
	assert.Equal(t, EndedClosed, in.EndedBy())
	assert.Equal(t, EndedRemoteBye, waitDone(t, out))
	callee.Close() // idempotent

	_, err = callee.Dial(ctx, DialOptions{Target: caller.Addr(), User: waUser})
	assert.ErrorIs(t, err, ErrClosed)
}

func TestCloseWhileRinging(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee, err := New(Config{Log: testLog, Answer: answering(Answer{RingFor: time.Minute})})
	require.NoError(t, err)
	require.NoError(t, callee.Start(ctx))
	caller := newPBX(t, Config{})

	errc := make(chan error, 1)
	go func() {
		_, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: waUser})
		errc <- err
	}()
	in := nextCall(t, callee)
	callee.Close()
	assert.Equal(t, EndedClosed, in.EndedBy())
	var ce *CallError
	require.ErrorAs(t, <-errc, &ce)
	assert.Equal(t, 480, ce.Code)
	assert.Equal(t, "PBX shutting down", ce.Warning)
}

func TestStartContextEndsPBX(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Log: testLog})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, p.Start(ctx))
	cancel()
	require.Eventually(t, func() bool {
		// Empty options: a PBX still open fails them without sending anything.
		_, err := p.Dial(context.Background(), DialOptions{})
		return errors.Is(err, ErrClosed)
	}, testTimeout, 10*time.Millisecond)
	p.Close() // waits for the Close that ctx started
}

func TestDialOptionsValidation(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	p := newPBX(t, Config{})
	for name, o := range map[string]DialOptions{
		"no target":     {User: waUser},
		"no user":       {Target: p.Addr()},
		"user with @":   {Target: p.Addr(), User: "a@b"},
		"CRLF in value": {Target: p.Addr(), User: waUser, Headers: map[string]string{"X-WA-Caller": "x\r\nBYE: y"}},
		"bad name":      {Target: p.Addr(), User: waUser, Headers: map[string]string{"X WA": "x"}},
		"tcp, no TCP":   {Target: p.Addr(), User: waUser, Transport: "tcp"},
		"sctp":          {Target: p.Addr(), User: waUser, Transport: "sctp"},
		"only events":   {Target: p.Addr(), User: waUser, Codecs: DefaultCodecs()[1:]},
	} {
		_, err := p.Dial(ctx, o)
		assert.Error(t, err, name)
	}
}

func TestManyConcurrentCalls(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	callee := newPBX(t, Config{Answer: answering(Answer{Echo: true, RingFor: 10 * time.Millisecond})})
	caller := newPBX(t, Config{})

	const n = 10
	errc := make(chan error, n)
	for i := range n {
		go func() {
			errc <- func() error {
				c, err := caller.Dial(ctx, DialOptions{Target: callee.Addr(), User: fmt.Sprintf("+1555000%04d", i)})
				if err != nil {
					return err
				}
				sent := payloads(5)
				if err := c.Media.Send(ctx, sent, defaultOpusPT, 5*time.Millisecond); err != nil {
					return err
				}
				if err := c.Media.WaitReceived(ctx, len(sent)); err != nil {
					return err
				}
				if got := payloadsOf(c.Media.Received(), defaultOpusPT); fmt.Sprint(got) != fmt.Sprint(sent) {
					return errors.New("echo mismatch")
				}
				return c.Hangup(ctx)
			}()
		}()
	}
	for range n {
		require.NoError(t, <-errc)
	}
	for range n {
		waitDone(t, nextCall(t, callee))
	}
}
