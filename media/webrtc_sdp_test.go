package media

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
)

// metaOfferSDP is shaped like Meta's user-initiated WebRTC offer (whatsapp-calling.md §4.3),
// with documentation addresses (RFC 5737, RFC 3849) in place of Meta's relay.
func metaOfferSDP(fingerprint string) string {
	return strings.ReplaceAll(`v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE audio
a=ice-lite
m=audio 3480 UDP/TLS/RTP/SAVPF 111 126
c=IN IP4 203.0.113.10
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:2669306934 1 udp 2122260223 203.0.113.10 3480 typ host generation 0 network-cost 50
a=candidate:3871138086 1 udp 2122262783 2001:db8::10 3480 typ host generation 0 network-cost 50
a=ice-ufrag:Q2Yt
a=ice-pwd:3BOVTCuAbC1vEoH0wJy7ZAuZ
a=fingerprint:`+fingerprint+`
a=setup:actpass
a=mid:audio
a=sendrecv
a=msid:WhatsAppStream WhatsAppTrack1
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1
a=rtpmap:126 telephone-event/8000
a=maxptime:20
a=ptime:20
a=ssrc:4001 cname:WhatsAppAudioStream1
`, "\n", "\r\n")
}

func parseMetaOffer(t *testing.T) *Description {
	t.Helper()
	d, err := ParseDescription([]byte(metaOfferSDP(testCert(t).Fingerprint())))
	require.NoError(t, err)
	return d
}

func discardEntry() *logrus.Entry { return logrus.NewEntry(discardLogger()) }

func TestParseRemoteWebRTCMetaOffer(t *testing.T) {
	t.Parallel()
	r, err := parseRemoteWebRTC(parseMetaOffer(t), discardEntry())
	require.NoError(t, err)
	require.Equal(t, "Q2Yt", r.ufrag)
	require.Equal(t, "3BOVTCuAbC1vEoH0wJy7ZAuZ", r.pwd)
	require.Equal(t, setupActpass, r.setup)
	require.Equal(t, "audio", r.mid)
	require.True(t, r.lite)
	require.Len(t, r.fingerprints, 1)
	require.Len(t, r.candidates, 2, "one IPv4 and one IPv6 host candidate")
	require.Equal(t, "203.0.113.10", r.candidates[0].Address())
	require.Equal(t, "2001:db8::10", r.candidates[1].Address())
	require.Equal(t, 3480, r.candidates[1].Port())
}

// TestParseRemoteWebRTCErrors: every reason to refuse an SDP is ErrMalformedSDP (SIP 488).
func TestParseRemoteWebRTCErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(d *Description)
		want   string
	}{
		{"SDES profile", func(d *Description) { d.Proto = ProtoRTPSAVP }, "proto"},
		{"no rtcp-mux", func(d *Description) { d.RTCPMux = false }, "rtcp-mux"},
		{"rejected", func(d *Description) { d.Port = 0 }, "rejected"},
		{"no ufrag", func(d *Description) { dropAttr(d, attrICEUfrag) }, "ice-ufrag"},
		{"no pwd", func(d *Description) { dropAttr(d, attrICEPwd) }, "ice-pwd"},
		{"no fingerprint", func(d *Description) { dropAttr(d, attrFingerprint) }, "fingerprint"},
		{"md5 fingerprint only", func(d *Description) {
			setAttr(d, attrFingerprint, "md5 "+strings.Repeat("AB:", 15)+"AB")
		}, "fingerprint"},
		{"no candidate, no address", func(d *Description) {
			dropAttr(d, attrCandidate)
			d.Addr = netip.IPv4Unspecified()
		}, "candidate"},
		{"TCP, RTCP component and mDNS candidates only", func(d *Description) {
			dropAttr(d, attrCandidate)
			d.Addr = netip.IPv4Unspecified()
			d.Extra = append(d.Extra,
				Attribute{Key: attrCandidate, Value: "1 1 tcp 1518280447 203.0.113.10 443 typ host tcptype passive"},
				Attribute{Key: attrCandidate, Value: "2 2 udp 2122260222 203.0.113.10 3481 typ host"},
				Attribute{Key: attrCandidate, Value: "3 1 udp 2122260223 0b5bc3fa-4c66-4d1e-8a5b-4d07ee6ef0b1.local 3480 typ host"},
				Attribute{Key: attrCandidate, Value: "garbage"})
		}, "candidate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := parseMetaOffer(t)
			tc.mutate(d)
			_, err := parseRemoteWebRTC(d, discardEntry())
			require.ErrorIs(t, err, ErrMalformedSDP)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func dropAttr(d *Description, key string) {
	for _, attrs := range []*[]Attribute{&d.Extra, &d.SessionExtra} {
		kept := (*attrs)[:0]
		for _, a := range *attrs {
			if a.Key != key {
				kept = append(kept, a)
			}
		}
		*attrs = kept
	}
}

func setAttr(d *Description, key, value string) {
	for _, attrs := range [][]Attribute{d.Extra, d.SessionExtra} {
		for i := range attrs {
			if attrs[i].Key == key {
				attrs[i].Value = value
			}
		}
	}
}

// TestParseRemoteWebRTCLevels: ICE credentials and fingerprints may sit at session level
// (RFC 8839 §5.4, RFC 8122 §5), media level winning; a c= address stands in for missing
// candidates (RFC 8839 §4.2.1.1).
func TestParseRemoteWebRTCLevels(t *testing.T) {
	t.Parallel()
	d := parseMetaOffer(t)
	fp, _ := d.Attr(attrFingerprint)
	dropAttr(d, attrICEUfrag)
	dropAttr(d, attrICEPwd)
	dropAttr(d, attrFingerprint)
	dropAttr(d, attrCandidate)
	d.SessionExtra = append(d.SessionExtra,
		Attribute{Key: attrICEUfrag, Value: "sess"}, Attribute{Key: attrICEPwd, Value: "sessionpasswordsessionpw"},
		Attribute{Key: attrFingerprint, Value: fp})
	d.Extra = append(d.Extra, Attribute{Key: attrICEUfrag, Value: "media"})
	r, err := parseRemoteWebRTC(d, discardEntry())
	require.NoError(t, err)
	require.Equal(t, "media", r.ufrag)
	require.Equal(t, "sessionpasswordsessionpw", r.pwd)
	require.Len(t, r.fingerprints, 1)
	require.Len(t, r.candidates, 1)
	require.Equal(t, "203.0.113.10", r.candidates[0].Address())
	require.Equal(t, 3480, r.candidates[0].Port())
}

// TestAnswerDTLSRole: we answer active (DTLS client) unless the offer insists on being active
// itself (RFC 5763 §5); Meta offers actpass (§4.3).
func TestAnswerDTLSRole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		offer, answer string
		role          dtlsRole
		bad           bool
	}{
		{offer: "actpass", answer: setupActive, role: dtlsClient},
		{offer: "ACTPASS", answer: setupActive, role: dtlsClient},
		{offer: "", answer: setupActive, role: dtlsClient},
		{offer: "passive", answer: setupActive, role: dtlsClient},
		{offer: "active", answer: setupPassive, role: dtlsServer},
		{offer: "holdconn", bad: true},
	} {
		t.Run("offer "+tc.offer, func(t *testing.T) {
			t.Parallel()
			d := parseMetaOffer(t)
			if tc.offer == "" {
				dropAttr(d, attrSetup)
			} else {
				setAttr(d, attrSetup, tc.offer)
			}
			leg := newTestLeg(t, nil)
			ans, err := leg.Answer(d, metaCodecs())
			if tc.bad {
				require.ErrorIs(t, err, ErrMalformedSDP)
				return
			}
			require.NoError(t, err)
			setup, _ := ans.Attr(attrSetup)
			require.Equal(t, tc.answer, setup)
			require.Equal(t, tc.role, leg.role)
			mid, _ := ans.Attr(attrMid)
			require.Equal(t, "audio", mid, "Meta's mid mirrored")
			require.Contains(t, ans.SessionExtra, Attribute{Key: attrGroup, Value: "BUNDLE audio"})
		})
	}
}

// TestSetAnswerDTLSRole: we offered actpass; the answer decides.
func TestSetAnswerDTLSRole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setup, mid string
		role       dtlsRole
		bad        bool
	}{
		{setup: "active", mid: offerMid, role: dtlsServer},
		{setup: "", mid: offerMid, role: dtlsServer}, // RFC 4145 §4: absent means active
		{setup: "passive", mid: offerMid, role: dtlsClient},
		{setup: "passive", mid: "", role: dtlsClient},
		{setup: "actpass", mid: offerMid, bad: true}, // RFC 5763 §5: not an answer
		{setup: "active", mid: "audio", bad: true},   // not the section we offered
	} {
		t.Run("answer "+tc.setup+" mid "+tc.mid, func(t *testing.T) {
			t.Parallel()
			leg := newTestLeg(t, nil)
			_, err := leg.Offer(metaCodecs())
			require.NoError(t, err)
			ans := parseMetaOffer(t)
			dropAttr(ans, attrMid)
			if tc.mid != "" {
				ans.Extra = append(ans.Extra, Attribute{Key: attrMid, Value: tc.mid})
			}
			if tc.setup == "" {
				dropAttr(ans, attrSetup)
			} else {
				setAttr(ans, attrSetup, tc.setup)
			}
			err = leg.SetAnswer(ans)
			if tc.bad {
				require.ErrorIs(t, err, ErrMalformedSDP)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.role, leg.role)
		})
	}
}

func TestDemuxRFC7983(t *testing.T) {
	t.Parallel()
	for b := 0; b < 256; b++ {
		p := []byte{byte(b), 0}
		require.Equal(t, b >= 20 && b <= 63, isDTLSRecord(p), "first byte %d", b)
		require.Equal(t, b >= 128 && b <= 191, isRTPOrRTCP(p), "first byte %d", b)
	}
	require.False(t, isDTLSRecord(nil))
	require.False(t, isRTPOrRTCP(nil))
}

// TestICEMediaConnEarlyMedia: media that came in during the handshake goes to the relay first,
// in order, and only up to the bound.
func TestICEMediaConnEarlyMedia(t *testing.T) {
	t.Parallel()
	c := &iceMediaConn{remote: parseMetaOffer(t).RTPAddr()}
	for i := range earlyQueueLen + 4 {
		c.keepEarly([]byte{0x80, byte(i)})
	}
	buf := make([]byte, 100)
	for i := range earlyQueueLen {
		n, from, err := c.ReadFrom(buf)
		require.NoError(t, err)
		require.Equal(t, []byte{0x80, byte(i)}, buf[:n])
		require.Equal(t, c.remote, from)
	}
	require.False(t, c.hasEarly.Load())
}
