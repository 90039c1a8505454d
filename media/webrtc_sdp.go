package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/sirupsen/logrus"
)

// SDP attributes of the WebRTC profile (RFC 8839 ICE, RFC 8122 fingerprint, RFC 4145/5763 setup,
// RFC 5888 mid and group, RFC 8843 BUNDLE).
const (
	attrICEUfrag    = "ice-ufrag"
	attrICEPwd      = "ice-pwd"
	attrICELite     = "ice-lite"
	attrCandidate   = "candidate"
	attrFingerprint = "fingerprint"
	attrSetup       = "setup"
	attrMid         = "mid"
	attrGroup       = "group"

	setupActive  = "active"
	setupPassive = "passive"
	setupActpass = "actpass"

	// offerMid is the mid of our offer, as JSEP implementations number their first section.
	// Meta's own offers say "audio" or "0" (§4.3) and answer with whatever was offered.
	offerMid = "0"
)

// remoteWebRTC is what the peer's SDP says about ICE and DTLS.
type remoteWebRTC struct {
	ufrag, pwd   string
	fingerprints []peerFingerprint
	setup        string // active, passive, actpass, or "" when absent
	mid          string
	lite         bool
	candidates   []ice.Candidate
}

// Answer answers Meta's offer (user-initiated call). The answer says a=setup:active, so we are
// the DTLS client as Meta wants (§0 fact 4, §4.5); only an offer of a=setup:active makes us answer
// passive and act as server (RFC 5763 §5). It carries our ICE credentials and every candidate
// (gathered already: no trickle), our fingerprint, the offer's mid in a=mid and a=group:BUNDLE,
// rtcp-mux, ptime 20 and codecs as given, in that order. The offer must be UDP/TLS/RTP/SAVPF with
// ICE credentials, a usable fingerprint, rtcp-mux and at least one UDP candidate (or a c= address).
// Errors wrap ErrMalformedSDP (SIP 488).
func (l *WebRTCLeg) Answer(offer *Description, codecs []Codec) (*Description, error) {
	if offer == nil {
		return nil, fmt.Errorf("%w: no offer", ErrMalformedSDP)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != legNew {
		return nil, errors.New("webrtc answer: the leg already has an offer or answer")
	}
	remote, err := parseRemoteWebRTC(offer, l.log)
	if err != nil {
		return nil, fmt.Errorf("webrtc answer: %w", err)
	}
	// RFC 5763 §5: the offerer says actpass (Meta does, §4.3) and the answerer picks. Active is
	// Meta's requirement. An offer of "passive" leaves us active too; only "active" makes us the
	// server. An absent a=setup counts as actpass (RFC 8842 §5.3 leaves the default to the answer).
	setup, role := setupActive, dtlsClient
	switch remote.setup {
	case setupActive:
		setup, role = setupPassive, dtlsServer
	case setupPassive, setupActpass, "":
	default:
		return nil, fmt.Errorf("webrtc answer: %w: a=setup:%s", ErrMalformedSDP, remote.setup)
	}
	if err := l.addRemoteCandidates(remote); err != nil {
		return nil, fmt.Errorf("webrtc answer: %w", err)
	}
	l.remote, l.role, l.mid, l.state = remote, role, remote.mid, legNegotiated
	l.log.WithFields(logrus.Fields{"offer_setup": remote.setup, "dtls_role": role.String(),
		"remote_candidates": len(remote.candidates), "ice_lite": remote.lite}).Debug("webrtc answer")
	return l.description(codecs, setup, remote.mid), nil
}

// Offer makes our offer (business-initiated call): a=setup:actpass so the answer decides the DTLS
// roles (Meta's published answers say active, §4.5 and open question 3), mid "0" in a BUNDLE
// group, rtcp-mux, ptime 20, ICE credentials, every candidate and our fingerprint, with codecs as
// given.
func (l *WebRTCLeg) Offer(codecs []Codec) (*Description, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != legNew {
		return nil, errors.New("webrtc offer: the leg already has an offer or answer")
	}
	l.mid, l.state = offerMid, legOffered
	return l.description(codecs, setupActpass, offerMid), nil
}

// SetAnswer takes the peer's answer to Offer and follows the DTLS role it picked: a=setup:active
// makes us the server, passive the client (RFC 5763 §5). An answer without a=setup means active
// (RFC 4145 §4). actpass is not a valid answer. ICE stays controlling either way (Connect).
// Errors wrap ErrMalformedSDP.
func (l *WebRTCLeg) SetAnswer(answer *Description) error {
	if answer == nil {
		return fmt.Errorf("%w: no answer", ErrMalformedSDP)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != legOffered {
		return errors.New("webrtc set answer: no offer outstanding")
	}
	remote, err := parseRemoteWebRTC(answer, l.log)
	if err != nil {
		return fmt.Errorf("webrtc set answer: %w", err)
	}
	var role dtlsRole
	switch remote.setup {
	case setupActive, "":
		role = dtlsServer
	case setupPassive:
		role = dtlsClient
	default:
		return fmt.Errorf("webrtc set answer: %w: a=setup:%s is not a valid answer (RFC 5763 §5)", ErrMalformedSDP, remote.setup)
	}
	if remote.mid != "" && remote.mid != l.mid {
		// RFC 3264 §6: the answer's section matches ours; a different mid is a different stream.
		return fmt.Errorf("webrtc set answer: %w: a=mid:%s, offered %s", ErrMalformedSDP, remote.mid, l.mid)
	}
	if err := l.addRemoteCandidates(remote); err != nil {
		return fmt.Errorf("webrtc set answer: %w", err)
	}
	l.remote, l.role, l.state = remote, role, legNegotiated
	l.log.WithFields(logrus.Fields{"answer_setup": remote.setup, "dtls_role": role.String(),
		"remote_candidates": len(remote.candidates), "ice_lite": remote.lite}).Debug("webrtc answer received")
	return nil
}

// addRemoteCandidates hands the peer's candidates of our socket's address family to the agent;
// checks start with Connect. With none, no pair can form and the call could only fail at the
// connect timeout, with the caller listening to silence, so it fails now (SIP 488) instead.
func (l *WebRTCLeg) addRemoteCandidates(remote *remoteWebRTC) error {
	v4 := l.local.Addr().Unmap().Is4()
	usable := remote.candidates[:0:0]
	for _, c := range remote.candidates {
		if addr, err := netip.ParseAddr(c.Address()); err != nil || addr.Unmap().Is4() != v4 {
			continue
		}
		usable = append(usable, c)
	}
	if len(usable) == 0 {
		return fmt.Errorf("%w: none of %d ICE candidates is of our socket's address family (%s)",
			ErrMalformedSDP, len(remote.candidates), l.local.Addr())
	}
	for _, c := range usable {
		if err := l.agent.AddRemoteCandidate(c); err != nil {
			l.log.WithError(err).WithField("candidate", c.String()).Debug("remote candidate ignored")
		}
	}
	remote.candidates = usable
	return nil
}

// description is our side of the exchange. The c= line carries the first candidate's address
// and the m= line our port, the "default candidate" of RFC 8839 §4.2.1.1, so that a peer reading
// only c= and m= still finds us (§4.4 asks for a public address in one or the other).
func (l *WebRTCLeg) description(codecs []Codec, setup, mid string) *Description {
	d := &Description{
		Addr:      l.defaultAddr,
		Port:      int(l.local.Port()),
		Proto:     ProtoWebRTC,
		RTCPMux:   true,
		Codecs:    append([]Codec(nil), codecs...),
		Direction: DirSendRecv,
		Ptime:     int(DefaultPtime / time.Millisecond), // Meta's mandatory 20 ms (§4.2)
	}
	if mid != "" {
		d.SessionExtra = append(d.SessionExtra, Attribute{Key: attrGroup, Value: "BUNDLE " + mid})
	}
	d.Extra = make([]Attribute, 0, 5+len(l.candidates))
	d.Extra = append(d.Extra,
		Attribute{Key: attrICEUfrag, Value: l.ufrag},
		Attribute{Key: attrICEPwd, Value: l.pwd},
		Attribute{Key: attrFingerprint, Value: l.cert.Fingerprint()},
		Attribute{Key: attrSetup, Value: setup},
	)
	if mid != "" {
		d.Extra = append(d.Extra, Attribute{Key: attrMid, Value: mid})
	}
	for _, c := range l.candidates {
		d.Extra = append(d.Extra, Attribute{Key: attrCandidate, Value: c})
	}
	return d
}

// webrtcAttr finds an attribute in the media section, else at session level: RFC 8839 §5.4 and
// RFC 8122 §5 allow ice-ufrag, ice-pwd and fingerprint at either level, media level winning.
func webrtcAttr(d *Description, key string) (string, bool) {
	for _, a := range d.Extra {
		if strings.TrimSpace(a.Key) == key {
			return strings.TrimSpace(a.Value), true
		}
	}
	for _, a := range d.SessionExtra {
		if strings.TrimSpace(a.Key) == key {
			return strings.TrimSpace(a.Value), true
		}
	}
	return "", false
}

// parseRemoteWebRTC reads the peer's ICE and DTLS parameters. Errors wrap ErrMalformedSDP.
func parseRemoteWebRTC(d *Description, log *logrus.Entry) (*remoteWebRTC, error) {
	if d.Port == 0 {
		return nil, fmt.Errorf("%w: audio stream rejected (port 0)", ErrMalformedSDP)
	}
	if !strings.EqualFold(d.Proto, ProtoWebRTC) {
		return nil, fmt.Errorf("%w: m=audio proto %q, want %s for DTLS-SRTP", ErrMalformedSDP, d.Proto, ProtoWebRTC)
	}
	if !d.RTCPMux {
		// This leg runs one ICE component; RTCP on a second one is not supported. Meta always
		// muxes (§0 fact 5).
		return nil, fmt.Errorf("%w: no a=rtcp-mux", ErrMalformedSDP)
	}
	r := &remoteWebRTC{}
	r.ufrag, _ = webrtcAttr(d, attrICEUfrag)
	r.pwd, _ = webrtcAttr(d, attrICEPwd)
	if r.ufrag == "" || r.pwd == "" {
		return nil, fmt.Errorf("%w: no a=ice-ufrag/a=ice-pwd", ErrMalformedSDP)
	}
	r.setup, _ = webrtcAttr(d, attrSetup)
	r.setup = strings.ToLower(r.setup)
	r.mid, _ = d.Attr(attrMid)
	r.mid = strings.TrimSpace(r.mid)
	_, r.lite = webrtcAttr(d, attrICELite)

	// Every fingerprint line counts, at media level if there are any, else at session level.
	for _, attrs := range [][]Attribute{d.Extra, d.SessionExtra} {
		for _, a := range attrs {
			if strings.TrimSpace(a.Key) != attrFingerprint {
				continue
			}
			if fp, ok := parseFingerprint(a.Value); ok {
				r.fingerprints = append(r.fingerprints, fp)
			}
		}
		if len(r.fingerprints) > 0 {
			break
		}
	}
	if len(r.fingerprints) == 0 {
		// Meta's own error for this case is "No fingerprint found in SDP" (§4.5).
		return nil, fmt.Errorf("%w: no usable a=fingerprint (sha-1/224/256/384/512)", ErrMalformedSDP)
	}

	for _, a := range d.Extra {
		if strings.TrimSpace(a.Key) != attrCandidate {
			continue
		}
		c, err := ice.UnmarshalCandidate(strings.TrimSpace(a.Value))
		if err != nil {
			log.WithError(err).WithField("candidate", a.Value).Debug("remote candidate unparsable; skipped")
			continue
		}
		// One component (rtcp-mux) over UDP; mDNS names would need resolving, which is off.
		if c.Component() != ice.ComponentRTP || !c.NetworkType().IsUDP() || strings.HasSuffix(c.Address(), ".local") {
			continue
		}
		r.candidates = append(r.candidates, c)
	}
	if len(r.candidates) == 0 && d.Addr.IsValid() && !d.Addr.IsUnspecified() {
		// No a=candidate: the c= address and m= port are the peer's one host candidate
		// (RFC 8839 §4.2.1.1's default candidate).
		c, err := ice.NewCandidateHost(&ice.CandidateHostConfig{
			Network: "udp", Address: d.Addr.String(), Port: d.Port, Component: ice.ComponentRTP,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: c=%s m= port %d: %w", ErrMalformedSDP, d.Addr, d.Port, err)
		}
		r.candidates = append(r.candidates, c)
	}
	if len(r.candidates) == 0 {
		return nil, fmt.Errorf("%w: no UDP ICE candidate and no c= address", ErrMalformedSDP)
	}
	return r, nil
}
