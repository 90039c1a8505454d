package bridge

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/media"
)

// waMedia is what the relay needs of the WhatsApp leg, whichever key exchange produced it.
type waMedia struct {
	endpoint   *media.Endpoint
	remote     netip.AddrPort
	remoteRTCP netip.AddrPort
	rtcpMux    bool
	latch      bool
	keys       *media.SRTPKeys
}

// sdesMedia is the WhatsApp leg of an SDES call: our own sockets, the peer's SDP addresses.
func (c *Call) sdesMedia(remote *media.Description, keys *media.SRTPKeys) waMedia {
	return waMedia{endpoint: c.waEP, remote: remote.RTPAddr(), remoteRTCP: remote.RTCPAddr(),
		rtcpMux: remote.RTCPMux, latch: true, keys: keys}
}

// usesDTLS says whether the number's WhatsApp media is ICE + DTLS-SRTP (Meta's default).
func (c *Call) usesDTLS() bool { return c.number.SIP.SRTP == config.KeyExchangeDTLS }

// newWebRTCLeg turns the WhatsApp endpoint into an ICE + DTLS leg. The leg owns the endpoint
// from here on.
func (c *Call) newWebRTCLeg() error {
	leg, err := media.NewWebRTCLeg(media.WebRTCConfig{
		Endpoint:       c.waEP,
		PublicIPs:      []netip.Addr{c.srv.publicIP},
		Certificate:    c.srv.dtlsCert,
		ConnectTimeout: time.Duration(c.cfg.Media.ICETimeout),
		Log:            c.log,
	})
	c.mu.Lock()
	c.waEP = nil
	if err == nil {
		c.web = leg
	}
	c.mu.Unlock()
	if err != nil {
		return sipErr(500, "Server Internal Error", "WebRTC leg", err)
	}
	return nil
}

// connectWebRTC runs ICE and the DTLS handshake. Meta waits for the business's first packet, so
// the relay starts the moment this returns (whatsapp-calling.md §0.6, §4.10).
func (c *Call) connectWebRTC(ctx context.Context) (waMedia, error) {
	started := time.Now()
	conn, keys, err := c.web.Connect(ctx)
	if err != nil {
		return waMedia{}, webRTCFailure(err)
	}
	c.log.WithFields(map[string]any{"remote": c.web.RemoteAddr().String(), "suite": keys.Local.Suite,
		"took": time.Since(started).Round(time.Millisecond).String()}).Info("ICE and DTLS connected")
	return waMedia{endpoint: &media.Endpoint{RTP: conn}, remote: c.web.RemoteAddr(), rtcpMux: true, keys: keys}, nil
}

// webRTCFailure gives an ICE/DTLS failure its SIP meaning for the leg that is still unanswered.
func webRTCFailure(err error) error {
	switch {
	case errors.Is(err, media.ErrFingerprintMismatch):
		return sipErr(503, "Service Unavailable", "DTLS certificate does not match the SDP fingerprint", err)
	case errors.Is(err, context.DeadlineExceeded) && errors.Is(err, media.ErrICEFailed):
		return sipErr(408, "Request Timeout", "ICE did not complete with WhatsApp", err)
	case errors.Is(err, context.DeadlineExceeded):
		return sipErr(408, "Request Timeout", "DTLS did not complete with WhatsApp", err)
	case errors.Is(err, media.ErrICEFailed):
		return sipErr(503, "Service Unavailable", "ICE failed with WhatsApp", err)
	default:
		return sipErr(503, "Service Unavailable", "DTLS failed with WhatsApp", err)
	}
}

// withSSRC declares the one stream we send toward WhatsApp (Meta supports a single SSRC, §4.2;
// its own SDPs carry a=ssrc cname, and a WebRTC offerer may ignore undeclared streams).
func (c *Call) withSSRC(d *media.Description) *media.Description {
	d.Extra = append(d.Extra, media.Attribute{Key: "ssrc", Value: fmt.Sprintf("%d cname:wabridge", c.ssrc)})
	return d
}

func randomSSRC() uint32 {
	for {
		if v := rand.Uint32(); v != 0 {
			return v
		}
	}
}

// codecsOf lists the agreed codec and, when both sides have it, telephone-event, at the
// payload types of the description they come from.
func codecsOf(d *media.Description, c audioCodec) []media.Codec {
	wc, _ := findByName(d.Codecs, c.Name)
	out := []media.Codec{wc}
	if c.WADTMF >= 0 {
		if te, ok := d.DTMF(); ok {
			out = append(out, te)
		}
	}
	return out
}
