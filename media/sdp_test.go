package media

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fixtures are written with LF line ends; sdpCRLF turns them into what SIP peers send.

// metaSDESOffer is Meta's SDES offer as whatsapp-calling.md §4.3 describes it: RTP/SAVP 111 126, Opus and
// DTMF lines as in its WebRTC offers, rtcp-mux, BUNDLE, a=crypto, no ICE or fingerprint. Meta masks its
// keys, so the key is RFC 4568's example key; the addresses are RFC 5737 documentation addresses.
const metaSDESOffer = `v=0
o=- 4611731400430051336 2 IN IP4 203.0.113.7
s=-
t=0 0
a=group:BUNDLE audio
m=audio 3480 RTP/SAVP 111 126
c=IN IP4 203.0.113.7
a=mid:audio
a=sendrecv
a=rtcp-mux
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^31|1:1
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1
a=rtpmap:126 telephone-event/8000
a=maxptime:20
a=ptime:20
a=ssrc:2821459337 cname:WhatsAppAudioStream1
`

// metaWebRTCOffer is Meta's UIC offer in WebRTC mode (whatsapp-calling.md §4.3).
const metaWebRTCOffer = `v=0
o=- 1700000000000000000 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE audio
a=ice-lite
a=msid-semantic: WMS WhatsAppTrack1
m=audio 3480 UDP/TLS/RTP/SAVPF 111 126
c=IN IP4 203.0.113.7
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1 1 udp 2122260223 203.0.113.7 3480 typ host generation 0 ufrag X5e9
a=candidate:2 1 udp 2122262783 2001:db8::7 3480 typ host generation 0 ufrag X5e9
a=ice-ufrag:X5e9
a=ice-pwd:3pxMmF4Yv2ZYf7fVj3d+0bSl
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:audio
a=sendrecv
a=msid:WhatsAppTrack1 WhatsAppTrack1-audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:126 telephone-event/8000
a=maxptime:20
a=ptime:20
a=ssrc:1506108385 cname:WhatsAppAudioStream1
`

// sippOffer is what sipp's built-in uac sends.
const sippOffer = `v=0
o=user1 53655765 2353687637 IN IP4 127.0.1.1
s=-
c=IN IP4 127.0.1.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
`

// pbxOffer is a PBX offer that relies on static payload types: no a=rtpmap for 8, 0 and 9.
const pbxOffer = `v=0
o=asterisk 1911 1911 IN IP4 192.0.2.10
s=Asterisk
c=IN IP4 192.0.2.10
t=0 0
m=audio 17000 RTP/AVP 8 0 9 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
`

func sdpCRLF(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// metaKey is the key||salt of metaSDESOffer's a=crypto line.
func metaSDESKey(t testing.TB) []byte {
	t.Helper()
	return decodeB64(t, "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
}

func wantMetaSDES(t testing.TB) *Description {
	return &Description{
		Addr:    netip.MustParseAddr("203.0.113.7"),
		Port:    3480,
		RTCPMux: true,
		Proto:   ProtoRTPSAVP,
		Codecs: []Codec{
			{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2,
				Fmtp: "maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1"},
			{PT: 126, Name: "telephone-event", ClockRate: 8000},
		},
		Crypto:    []Crypto{{Tag: 1, Suite: SuiteAES128SHA1_80, KeySalt: metaSDESKey(t), Params: "|2^31|1:1"}},
		Direction: DirSendRecv,
		Ptime:     20,
		Extra: []Attribute{
			{Key: "mid", Value: "audio"},
			{Key: "rtcp-fb", Value: "111 transport-cc"},
			{Key: "maxptime", Value: "20"},
			{Key: "ssrc", Value: "2821459337 cname:WhatsAppAudioStream1"},
		},
		SessionExtra: []Attribute{{Key: "group", Value: "BUNDLE audio"}},
		SessionID:    4611731400430051336,
		SessionVer:   2,
	}
}

func TestParseDescription(t *testing.T) {
	metaSession := strings.Replace(metaSDESOffer, "t=0 0\n", "c=IN IP4 203.0.113.7\nt=0 0\n", 1)
	metaSession = strings.Replace(metaSession, "a=mid:audio\n", "", 1)
	metaSession = strings.Replace(metaSession, "m=audio 3480 RTP/SAVP 111 126\nc=IN IP4 203.0.113.7\n",
		"m=audio 3480 RTP/SAVP 111 126\n", 1)
	wantSession := wantMetaSDES(t)
	wantSession.Extra = wantSession.Extra[1:]

	tests := []struct {
		name string
		sdp  string
		want func(t testing.TB) *Description
	}{
		{name: "meta SDES offer CRLF", sdp: sdpCRLF(metaSDESOffer), want: wantMetaSDES},
		{name: "meta SDES offer LF only", sdp: metaSDESOffer, want: wantMetaSDES},
		{name: "no final line end", sdp: strings.TrimSuffix(sdpCRLF(metaSDESOffer), "\r\n"), want: wantMetaSDES},
		{name: "final CR without LF", sdp: strings.TrimSuffix(sdpCRLF(metaSDESOffer), "\n"), want: wantMetaSDES},
		{name: "session-level c=", sdp: sdpCRLF(metaSession), want: func(testing.TB) *Description { return wantSession }},
		{
			name: "meta WebRTC offer",
			sdp:  sdpCRLF(metaWebRTCOffer),
			want: func(testing.TB) *Description {
				return &Description{
					Addr:    netip.MustParseAddr("203.0.113.7"),
					Port:    3480,
					RTCP:    netip.MustParseAddrPort("0.0.0.0:9"),
					RTCPMux: true,
					Proto:   ProtoWebRTC,
					Codecs: []Codec{
						{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"},
						{PT: 126, Name: "telephone-event", ClockRate: 8000},
					},
					Direction: DirSendRecv,
					Ptime:     20,
					Extra: []Attribute{
						{Key: "candidate", Value: "1 1 udp 2122260223 203.0.113.7 3480 typ host generation 0 ufrag X5e9"},
						{Key: "candidate", Value: "2 1 udp 2122262783 2001:db8::7 3480 typ host generation 0 ufrag X5e9"},
						{Key: "ice-ufrag", Value: "X5e9"},
						{Key: "ice-pwd", Value: "3pxMmF4Yv2ZYf7fVj3d+0bSl"},
						{Key: "fingerprint", Value: "sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08"},
						{Key: "setup", Value: "actpass"},
						{Key: "mid", Value: "audio"},
						{Key: "msid", Value: "WhatsAppTrack1 WhatsAppTrack1-audio"},
						{Key: "rtcp-fb", Value: "111 transport-cc"},
						{Key: "maxptime", Value: "20"},
						{Key: "ssrc", Value: "1506108385 cname:WhatsAppAudioStream1"},
					},
					SessionExtra: []Attribute{
						{Key: "group", Value: "BUNDLE audio"},
						{Key: "ice-lite"},
						{Key: "msid-semantic", Value: " WMS WhatsAppTrack1"},
					},
					SessionID:  1700000000000000000,
					SessionVer: 2,
				}
			},
		},
		{
			name: "sipp plain offer",
			sdp:  sdpCRLF(sippOffer),
			want: func(testing.TB) *Description {
				return &Description{
					Addr:      netip.MustParseAddr("127.0.1.1"),
					Port:      6000,
					Proto:     ProtoRTPAVP,
					Codecs:    []Codec{{PT: 0, Name: "PCMU", ClockRate: 8000}},
					Direction: DirSendRecv,
					SessionID: 53655765, SessionVer: 2353687637,
				}
			},
		},
		{
			name: "static payload types without rtpmap",
			sdp:  pbxOffer,
			want: func(testing.TB) *Description {
				return &Description{
					Addr:  netip.MustParseAddr("192.0.2.10"),
					Port:  17000,
					Proto: ProtoRTPAVP,
					Codecs: []Codec{
						{PT: 8, Name: "PCMA", ClockRate: 8000},
						{PT: 0, Name: "PCMU", ClockRate: 8000},
						{PT: 9, Name: "G722", ClockRate: 8000},
						{PT: 101, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16"},
					},
					Direction: DirSendRecv,
					Ptime:     20,
					Extra:     []Attribute{{Key: "maxptime", Value: "150"}},
					SessionID: 1911, SessionVer: 1911,
				}
			},
		},
		{
			name: "media c= wins, IPv6, a=rtcp with port only, session direction",
			sdp: `v=0
o=- 1 1 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
a=sendonly
m=audio 4000 RTP/AVP 96 97
c=IN IP6 2001:db8::2
a=rtpmap:96 opus/48000/2
a=rtpmap:97 telephone-event/48000
a=rtcp:4011
`,
			want: func(testing.TB) *Description {
				return &Description{
					Addr:  netip.MustParseAddr("2001:db8::2"),
					Port:  4000,
					RTCP:  netip.AddrPortFrom(netip.Addr{}, 4011),
					Proto: ProtoRTPAVP,
					Codecs: []Codec{
						{PT: 96, Name: "opus", ClockRate: 48000, Channels: 2},
						{PT: 97, Name: "telephone-event", ClockRate: 48000},
					},
					Direction: DirSendOnly,
					SessionID: 1, SessionVer: 1,
				}
			},
		},
		{
			name: "lenient attributes: blanks, bad lines dropped, first wins, orphans dropped",
			sdp: `v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
t=0 0
a=inactive
m=audio 4000 RTP/AVP 96 0 97
c=IN IP4 192.0.2.1/127
a=rtpmap:96 speex/16000
a=rtpmap:96 opus/48000/2
a=rtpmap:0 PCMU/0
a=rtpmap:97 bad
a=rtpmap:98 PCMA/8000
a=fmtp:96 a=1
a=fmtp:96 a=2
a=fmtp:98 x=1
a=fmtp:xx y
a=ptime:abc
a=ptime:30
a=ptime:40
a=rtcp:70000
a=rtcp:9 IN IP4 not-an-ip
a=rtcp:4001 IN IP4 192.0.2.9
a=rtcp:4003
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=
a=crypto:2 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR
a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR
a=recvonly 
a=sendonly
a=x-custom: spaced value 
`,
			want: func(t testing.TB) *Description {
				return &Description{
					Addr:  netip.MustParseAddr("192.0.2.1"),
					Port:  4000,
					RTCP:  netip.MustParseAddrPort("192.0.2.9:4001"),
					Proto: ProtoRTPAVP,
					Codecs: []Codec{
						{PT: 96, Name: "speex", ClockRate: 16000, Fmtp: "a=1"},
						{PT: 0, Name: "PCMU", ClockRate: 8000},
						{PT: 97},
					},
					Crypto:    []Crypto{{Tag: 3, Suite: SuiteAES128SHA1_32, KeySalt: metaSDESKey(t)}},
					Direction: DirRecvOnly,
					Ptime:     30,
					Extra:     []Attribute{{Key: "x-custom", Value: " spaced value "}},
					SessionID: 1, SessionVer: 1,
				}
			},
		},
		{
			name: "first audio section after video, rejected without c=",
			sdp: `v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
t=0 0
m=video 5000 RTP/AVP 96
a=rtpmap:96 VP8/90000
m=audio 0 RTP/SAVP 0
m=audio 7000 RTP/AVP 8
`,
			want: func(testing.TB) *Description {
				return &Description{
					Port:      0,
					Proto:     ProtoRTPSAVP,
					Codecs:    []Codec{{PT: 0, Name: "PCMU", ClockRate: 8000}},
					Direction: DirSendRecv,
					SessionID: 1, SessionVer: 1,
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDescription([]byte(tt.sdp))
			require.NoError(t, err)
			assert.Equal(t, tt.want(t), got)
		})
	}
}

func TestParseDescriptionErrors(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"
	tests := []struct {
		name string
		sdp  string
		want error
	}{
		{"empty", "", ErrMalformedSDP},
		{"blank", " \r\n\r\n", ErrMalformedSDP},
		{"garbage", "hello world", ErrMalformedSDP},
		{"binary", "\x00\xff\xfe=\x01", ErrMalformedSDP},
		{"SIP message instead of body", "INVITE sip:a@b SIP/2.0\r\n\r\n", ErrMalformedSDP},
		{"bare CR line ends", strings.ReplaceAll(sippOffer, "\n", "\r"), ErrMalformedSDP},
		{"no v=", "o=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n", ErrMalformedSDP},
		{"c= hostname", head + "c=IN IP4 pbx.example.com\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", ErrMalformedSDP},
		{"no c= for live stream", head + "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", ErrMalformedSDP},
		{"format not a number", head + "c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP PCMU\r\n", ErrMalformedSDP},
		{"payload type above 127", head + "c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 128\r\n", ErrMalformedSDP},
		{"port out of range", head + "c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n", ErrMalformedSDP},
		{"no media", head + "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", ErrNoAudio},
		{"video only", head + "c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n", ErrNoAudio},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDescription([]byte(tt.sdp))
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, d)
			assert.NotEqual(t, tt.want.Error(), err.Error(), "error should carry detail")
		})
	}
}

func TestMarshal(t *testing.T) {
	d := &Description{
		Addr:    netip.MustParseAddr("198.51.100.4"),
		Port:    20000,
		RTCPMux: true,
		Proto:   ProtoRTPSAVP,
		Codecs: []Codec{
			{PT: 111, Name: "opus", ClockRate: 48000, Fmtp: "minptime=10;useinbandfec=1"},
			{PT: 126, Name: "telephone-event", ClockRate: 8000},
		},
		Crypto:       []Crypto{{Tag: 1, Suite: SuiteAES128SHA1_80, KeySalt: metaSDESKey(t)}},
		Direction:    DirSendRecv,
		Ptime:        20,
		Extra:        []Attribute{{Key: "mid", Value: "audio"}},
		SessionExtra: []Attribute{{Key: "group", Value: "BUNDLE audio"}},
		SessionID:    42,
		SessionVer:   7,
	}
	want := "v=0\r\n" +
		"o=wabridge 42 7 IN IP4 198.51.100.4\r\n" +
		"s=wabridge\r\n" +
		"c=IN IP4 198.51.100.4\r\n" +
		"t=0 0\r\n" +
		"a=group:BUNDLE audio\r\n" +
		"m=audio 20000 RTP/SAVP 111 126\r\n" +
		"a=rtpmap:111 opus/48000/2\r\n" + // channels supplied for opus (RFC 7587)
		"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
		"a=rtpmap:126 telephone-event/8000\r\n" +
		"a=ptime:20\r\n" +
		"a=rtcp-mux\r\n" +
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n" +
		"a=mid:audio\r\n" +
		"a=sendrecv\r\n"
	assert.Equal(t, want, string(d.Marshal()))

	t.Run("defaults", func(t *testing.T) {
		d := &Description{Port: 0, Codecs: []Codec{{PT: 0, Name: "PCMU", ClockRate: 8000}}, SessionID: 1}
		assert.Equal(t, "v=0\r\no=wabridge 1 0 IN IP4 0.0.0.0\r\ns=wabridge\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"+
			"m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", string(d.Marshal()))
	})
	t.Run("rtcp only without mux", func(t *testing.T) {
		d := &Description{Addr: netip.MustParseAddr("192.0.2.1"), Port: 4000, RTCP: netip.MustParseAddrPort("192.0.2.2:4001"),
			RTCPMux: true, SessionID: 1}
		assert.NotContains(t, string(d.Marshal()), "a=rtcp:")
		d.RTCPMux = false
		assert.Contains(t, string(d.Marshal()), "\r\na=rtcp:4001 IN IP4 192.0.2.2\r\n")
		d.RTCP = netip.AddrPortFrom(netip.Addr{}, 4001)
		assert.Contains(t, string(d.Marshal()), "\r\na=rtcp:4001\r\n")
	})
}

func TestMarshalSessionID(t *testing.T) {
	d := &Description{Addr: netip.MustParseAddr("192.0.2.1"), Port: 4000}
	first := d.Marshal()
	require.NotZero(t, d.SessionID, "Marshal keeps the id it picked")
	assert.Less(t, d.SessionID, uint64(math.MaxInt64)+1)
	assert.Equal(t, first, d.Marshal(), "the same description must marshal to the same SDP")

	got, err := ParseDescription(first)
	require.NoError(t, err)
	assert.Equal(t, d.SessionID, got.SessionID)
	other := &Description{Addr: netip.MustParseAddr("192.0.2.1"), Port: 4000}
	other.Marshal()
	assert.NotEqual(t, d.SessionID, other.SessionID)
}

func TestMarshalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		d    func(t testing.TB) *Description
	}{
		{"meta SDES offer", wantMetaSDES},
		{"our SDES answer", func(t testing.TB) *Description {
			c, err := NewCrypto(1, SuiteAES128SHA1_80)
			require.NoError(t, err)
			return &Description{
				Addr: netip.MustParseAddr("198.51.100.4"), Port: 20000, RTCPMux: true, Proto: ProtoRTPSAVP,
				Codecs: []Codec{
					{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "useinbandfec=1"},
					{PT: 126, Name: "telephone-event", ClockRate: 8000},
				},
				Crypto: []Crypto{c}, Direction: DirSendRecv, Ptime: 20,
				SessionID: 1, SessionVer: 1,
			}
		}},
		{"plain G.711 to a PBX, RTCP on an explicit address", func(testing.TB) *Description {
			return &Description{
				Addr: netip.MustParseAddr("10.0.0.5"), Port: 30000,
				RTCP:  netip.MustParseAddrPort("10.0.0.6:30001"),
				Proto: ProtoRTPAVP,
				Codecs: []Codec{
					{PT: 8, Name: "PCMA", ClockRate: 8000},
					{PT: 0, Name: "PCMU", ClockRate: 8000},
					{PT: 101, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16"},
				},
				Direction: DirSendOnly, Ptime: 20,
				SessionID: math.MaxInt64, SessionVer: math.MaxUint64,
			}
		}},
		{"IPv6, a=rtcp port only, unnamed dynamic codec", func(testing.TB) *Description {
			return &Description{
				Addr: netip.MustParseAddr("2001:db8::5"), Port: 30000,
				RTCP:  netip.AddrPortFrom(netip.Addr{}, 30003),
				Proto: ProtoRTPAVP,
				Codecs: []Codec{
					{PT: 96},
					{PT: 10, Name: "L16", ClockRate: 44100, Channels: 2},
				},
				Direction: DirInactive,
				SessionID: 3,
			}
		}},
		{"WebRTC extras", func(testing.TB) *Description {
			return &Description{
				Addr: netip.MustParseAddr("0.0.0.0"), Port: 9, RTCPMux: true, Proto: ProtoWebRTC,
				Codecs:    []Codec{{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2}},
				Direction: DirRecvOnly,
				Extra: []Attribute{
					{Key: "ice-ufrag", Value: "abcd"},
					{Key: "ice-pwd", Value: "0123456789abcdefghijklmn"},
					{Key: "fingerprint", Value: "sha-256 AA:BB"},
					{Key: "setup", Value: "active"},
					{Key: "mid", Value: "audio"},
					{Key: "candidate", Value: "1 1 udp 2130706431 198.51.100.4 9 typ host"},
					{Key: "end-of-candidates"},
				},
				SessionExtra: []Attribute{{Key: "group", Value: "BUNDLE audio"}, {Key: "ice-lite"}},
				SessionID:    9,
			}
		}},
		{"rejected stream", func(testing.TB) *Description {
			return &Description{
				Addr: netip.MustParseAddr("0.0.0.0"), Proto: ProtoRTPSAVP,
				Codecs: []Codec{{PT: 0, Name: "PCMU", ClockRate: 8000}}, Direction: DirSendRecv, SessionID: 5,
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.d(t)
			out := d.Marshal()
			assert.NotContains(t, strings.ReplaceAll(string(out), "\r\n", ""), "\n", "every line ends in CRLF")
			got, err := ParseDescription(out)
			require.NoError(t, err, "%s", out)
			assert.Equal(t, d, got)
		})
	}
}

func TestRTPAndRTCPAddr(t *testing.T) {
	c := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name      string
		d         Description
		rtp, rtcp string
	}{
		{"port+1", Description{Addr: c, Port: 4000}, "192.0.2.1:4000", "192.0.2.1:4001"},
		{"rtcp-mux", Description{Addr: c, Port: 4000, RTCPMux: true, RTCP: netip.MustParseAddrPort("0.0.0.0:9")},
			"192.0.2.1:4000", "192.0.2.1:4000"},
		{"a=rtcp with address", Description{Addr: c, Port: 4000, RTCP: netip.MustParseAddrPort("192.0.2.9:5001")},
			"192.0.2.1:4000", "192.0.2.9:5001"},
		{"a=rtcp port only", Description{Addr: c, Port: 4000, RTCP: netip.AddrPortFrom(netip.Addr{}, 5001)},
			"192.0.2.1:4000", "192.0.2.1:5001"},
		{"IPv6", Description{Addr: netip.MustParseAddr("2001:db8::1"), Port: 4000}, "[2001:db8::1]:4000", "[2001:db8::1]:4001"},
		{"rejected", Description{Addr: c, Port: 0}, "192.0.2.1:0", "192.0.2.1:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, netip.MustParseAddrPort(tt.rtp), tt.d.RTPAddr())
			assert.Equal(t, netip.MustParseAddrPort(tt.rtcp), tt.d.RTCPAddr())
		})
	}

	t.Run("parsed a=rtcp without address", func(t *testing.T) {
		d, err := ParseDescription([]byte(strings.Replace(sippOffer, "a=rtpmap:0 PCMU/8000\n", "a=rtcp:6007\n", 1)))
		require.NoError(t, err)
		assert.Equal(t, netip.MustParseAddrPort("127.0.1.1:6007"), d.RTCPAddr())
	})
}

func TestCodecLookups(t *testing.T) {
	d, err := ParseDescription([]byte(metaSDESOffer))
	require.NoError(t, err)

	c, ok := d.FindCodec("OPUS", 48000)
	require.True(t, ok)
	assert.Equal(t, uint8(111), c.PT)
	_, ok = d.FindCodec("opus", 8000)
	assert.False(t, ok)
	c, ok = d.FindCodec("Telephone-Event", 0)
	require.True(t, ok, "clock 0 matches any rate")
	assert.Equal(t, uint8(126), c.PT)

	c, ok = d.DTMF()
	require.True(t, ok)
	assert.Equal(t, Codec{PT: 126, Name: CodecTelEvent, ClockRate: 8000}, c)

	c, ok = d.Codec(111)
	require.True(t, ok)
	assert.Equal(t, "opus", c.Name)
	_, ok = d.Codec(0)
	assert.False(t, ok)

	v, ok := d.Attr("ssrc")
	require.True(t, ok)
	assert.Equal(t, "2821459337 cname:WhatsAppAudioStream1", v)
	_, ok = d.Attr("rtcp-mux")
	assert.False(t, ok, "modelled attributes are not extras")
	_, ok = d.Attr("ice-ufrag")
	assert.False(t, ok)

	// DTMF at 48000 is not what Meta needs (whatsapp-calling.md §4.8).
	wide := &Description{Codecs: []Codec{{PT: 101, Name: CodecTelEvent, ClockRate: 48000}}}
	_, ok = wide.DTMF()
	assert.False(t, ok)
}

// FuzzParseDescription checks that no input panics, that errors are classified, and that whatever
// parses survives Marshal and a second parse unchanged.
func FuzzParseDescription(f *testing.F) {
	for _, s := range []string{metaSDESOffer, metaWebRTCOffer, sippOffer, pbxOffer} {
		f.Add([]byte(s))
		f.Add([]byte(sdpCRLF(s)))
	}
	f.Add([]byte(""))
	f.Add([]byte("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDescription(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedSDP) && !errors.Is(err, ErrNoAudio) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		_ = d.RTPAddr()
		_ = d.RTCPAddr()
		out := d.Marshal()
		again, err := ParseDescription(out)
		if err != nil {
			t.Fatalf("Marshal output does not parse: %v\n%q\nfrom %q", err, out, b)
		}
		// What Marshal writes differently on purpose (see its doc).
		if !d.Addr.IsValid() {
			d.Addr = netip.IPv4Unspecified()
		}
		if d.RTCPMux {
			d.RTCP = netip.AddrPort{}
		}
		for i, c := range d.Codecs {
			if c.Channels == 0 && strings.EqualFold(c.Name, CodecOpus) {
				d.Codecs[i].Channels = 2
			}
		}
		require.Equal(t, d, again, "round trip of %q via %q", b, out)
	})
}

func BenchmarkParseDescription(b *testing.B) {
	offer := []byte(sdpCRLF(metaSDESOffer))
	b.ReportAllocs()
	b.SetBytes(int64(len(offer)))
	for b.Loop() {
		if _, err := ParseDescription(offer); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalDescription(b *testing.B) {
	d := wantMetaSDES(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = d.Marshal()
	}
}
