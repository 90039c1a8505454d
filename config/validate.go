package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Validate reports every problem in c, joined with errors.Join, each starting with the key path
// ("numbers[0].sip.password: ..."). It expects defaults to be applied, as Load and Parse do.
//
// Beyond syntax it checks what would otherwise fail only at the first call: the TLS certificate
// and key load, match, are currently valid and cover each SIP number's hostname; CA, password
// files and password_env variables are readable and non-empty.
func (c *Config) Validate() error {
	return errors.Join(c.validate()...)
}

func (c *Config) validate() []error {
	var p problems
	c.validateLog(&p)
	c.validateSIP(&p)
	c.validateMedia(&p)
	c.validatePBX(&p)
	c.validateNumbers(&p)
	c.validateLimits(&p)
	if c.HTTP.Listen != "" {
		p.addErr("http.listen", checkHostPort(c.HTTP.Listen, true))
	}
	return p
}

// problems collects validation errors, each prefixed with its key.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// addErr records err under key; nil is ignored so checks can be passed straight through.
func (p *problems) addErr(key string, err error) {
	if err != nil {
		*p = append(*p, fmt.Errorf("%s: %w", key, err))
	}
}

func (c *Config) validateLog(p *problems) {
	if _, err := logrus.ParseLevel(c.Log.Level); err != nil {
		p.add("log.level", "%q is not a level; use trace, debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case LogFormatAuto, LogFormatJSON, LogFormatText:
	default:
		p.add("log.format", "%q is not a format; use auto, json or text", c.Log.Format)
	}
}

func (c *Config) validateSIP(p *problems) {
	s := &c.SIP
	// An empty hostname can only come from an empty media.public_ip, which is reported there.
	if s.Hostname != "" && !validHost(s.Hostname) {
		p.add("sip.hostname", "%q is not a hostname or IP address", s.Hostname)
	}
	if s.PBXListen.UDP != "" {
		p.addErr("sip.pbx_listen.udp", checkHostPort(s.PBXListen.UDP, true))
	}
	if s.PBXListen.TCP != "" {
		p.addErr("sip.pbx_listen.tcp", checkHostPort(s.PBXListen.TCP, true))
	}
	if s.PBXListen.TLS != "" {
		p.addErr("sip.pbx_listen.tls", checkHostPort(s.PBXListen.TLS, true))
		if s.WhatsAppListen.CertFile == "" {
			p.add("sip.pbx_listen.tls", "needs sip.whatsapp_listen.cert_file and key_file: the PBX listener uses that certificate")
		}
	}
	if c.PBX.CAFile != "" {
		if _, err := os.ReadFile(c.PBX.CAFile); err != nil {
			p.add("pbx.ca_file", "%v", err)
		}
	}
	// Our requests to the PBX leave from the listener of the same transport, so its responses
	// and in-dialog requests (BYE) come back there; without it, calls to the PBX half-work.
	switch {
	case c.PBX.Transport == TransportUDP && s.PBXListen.UDP == "":
		p.add("sip.pbx_listen.udp", "must be set when pbx.transport is udp: the PBX's responses and requests arrive there")
	case c.PBX.Transport == TransportTCP && s.PBXListen.TCP == "":
		p.add("sip.pbx_listen.tcp", "must be set when pbx.transport is tcp: the PBX's responses and requests arrive there")
	case c.PBX.Transport == TransportTLS && s.PBXListen.TLS == "":
		p.add("sip.pbx_listen.tls", "must be set when pbx.transport is tls: the PBX's requests arrive there")
	}

	var hostnames []string // each SIP number's name, which the certificate must carry
	for i := range c.Numbers {
		if n := &c.Numbers[i]; n.Mode == ModeSIP && n.SIP.Hostname != "" {
			hostnames = append(hostnames, n.SIP.Hostname)
		}
	}
	w := &s.WhatsAppListen
	if w.TLS == "" {
		if len(hostnames) > 0 {
			p.add("sip.whatsapp_listen.tls", "required when a number has mode sip: Meta connects here for user-initiated calls")
		}
	} else {
		p.addErr("sip.whatsapp_listen.tls", checkHostPort(w.TLS, true))
		c.validateCertificate(p, hostnames)
	}
	if s.WhatsAppCAFile != "" {
		p.addErr("sip.whatsapp_ca_file", checkCAFile(s.WhatsAppCAFile))
	}
}

// validateCertificate loads the listener's key pair and checks that Meta would accept it: Meta
// verifies our certificate against the number's configured hostname, and certificate errors are
// the most common reason no INVITE ever arrives (whatsapp-calling.md §5.1).
func (c *Config) validateCertificate(p *problems, hostnames []string) {
	w := &c.SIP.WhatsAppListen
	if w.CertFile == "" {
		p.add("sip.whatsapp_listen.cert_file", "required when sip.whatsapp_listen.tls is set")
	}
	if w.KeyFile == "" {
		p.add("sip.whatsapp_listen.key_file", "required when sip.whatsapp_listen.tls is set")
	}
	if w.CertFile == "" || w.KeyFile == "" {
		return
	}
	pair, err := tls.LoadX509KeyPair(w.CertFile, w.KeyFile)
	if err != nil {
		p.addErr("sip.whatsapp_listen.cert_file", fmt.Errorf("load key pair with key_file: %w", err))
		return
	}
	leaf := pair.Leaf // parsed by LoadX509KeyPair since Go 1.23
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			p.addErr("sip.whatsapp_listen.cert_file", fmt.Errorf("parse certificate: %w", err))
			return
		}
	}
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		p.add("sip.whatsapp_listen.cert_file", "certificate is not valid now (valid %s to %s)",
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	for i := range c.Numbers {
		n := &c.Numbers[i]
		if n.Mode != ModeSIP || n.SIP.Hostname == "" || !validHost(n.SIP.Hostname) {
			continue
		}
		if err := leaf.VerifyHostname(n.SIP.Hostname); err != nil {
			p.add(fmt.Sprintf("numbers[%d].sip.hostname", i),
				"%q is not covered by the certificate in sip.whatsapp_listen.cert_file (it covers %s); Meta verifies this name",
				n.SIP.Hostname, certNames(leaf))
		}
	}
}

func certNames(cert *x509.Certificate) string {
	names := append([]string(nil), cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no DNS or IP names"
	}
	return strings.Join(names, ", ")
}

func checkCAFile(path string) error {
	pem, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no PEM certificate", path)
	}
	return nil
}

func (c *Config) validateMedia(p *problems) {
	m := &c.Media
	bind, err := netip.ParseAddr(m.BindIP)
	if err != nil {
		p.add("media.bind_ip", "%q is not an IP address", m.BindIP)
	}
	switch {
	case m.PublicIP == "":
		if err == nil { // a bad bind_ip is reported above; its fix may settle public_ip too
			p.add("media.public_ip", "required when media.bind_ip is %s: it is the address peers send media to", bind)
		}
	default:
		if pub, err := netip.ParseAddr(m.PublicIP); err != nil || pub.IsUnspecified() {
			p.add("media.public_ip", "%q is not a concrete IP address", m.PublicIP)
		}
	}
	if m.RTPPortMin%2 != 0 || m.RTPPortMin >= m.RTPPortMax {
		p.add("media.rtp_port_min", "must be even and < rtp_port_max (RTP takes the even port, RTCP the odd one after it)")
	}
	if m.RTPPortMin < 1 {
		p.add("media.rtp_port_min", "must be a port number (1-65535)")
	}
	if m.RTPPortMax > 65535 {
		p.add("media.rtp_port_max", "must be a port number (1-65535)")
	}
	if m.InactivityTimeout <= 0 {
		p.add("media.inactivity_timeout", "must be positive")
	}
}

func (c *Config) validatePBX(p *problems) {
	x := &c.PBX
	if x.Address == "" {
		p.add("pbx.address", "required: host:port of the PBX trunk")
	} else {
		p.addErr("pbx.address", checkHostPort(x.Address, false))
	}
	switch x.Transport {
	case TransportUDP, TransportTCP, TransportTLS:
	default:
		p.add("pbx.transport", "%q is not a transport; use udp, tcp or tls", x.Transport)
	}
	// RFC 3551 §3 leaves 96-127 for dynamic payload types; the static ones mean other codecs.
	for _, f := range []struct {
		key string
		pt  int
	}{{"pbx.opus_pt", x.OpusPT}, {"pbx.dtmf_pt", x.DTMFPT}} {
		if f.pt < 96 || f.pt > 127 {
			p.add(f.key, "%d is not a dynamic payload type (96-127)", f.pt)
		}
	}
	if x.OpusPT == x.DTMFPT {
		p.add("pbx.dtmf_pt", "must differ from pbx.opus_pt")
	}

	r := &x.Register
	if !r.Enabled {
		return
	}
	if r.Username == "" {
		p.add("pbx.register.username", "required when pbx.register.enabled is true")
	}
	if _, err := resolveSecret(r.PasswordInline, r.PasswordFile, r.PasswordEnv); err != nil {
		*p = append(*p, secretError("pbx.register", err))
	}
	if r.Expires < MinRegisterExpires {
		p.add("pbx.register.expires", "must be at least %s (PBXs reject shorter registrations with 423)", MinRegisterExpires)
	}
	// An empty registrar was defaulted to pbx.address, which is checked above.
	if r.Registrar != "" && r.Registrar != x.Address {
		p.addErr("pbx.register.registrar", checkHostPort(r.Registrar, false))
	}
}

func (c *Config) validateNumbers(p *problems) {
	if len(c.Numbers) == 0 {
		p.add("numbers", "at least one number is required")
	}
	seenNumber := map[string]int{}
	seenID := map[string]int{}
	for i := range c.Numbers {
		n := &c.Numbers[i]
		key := fmt.Sprintf("numbers[%d]", i)
		if !isE164(n.Number) {
			p.add(key+".number", "%q is not E.164: '+', country code and number, 7 to 15 digits, e.g. \"+15551230001\"", n.Number)
		} else if j, dup := seenNumber[n.Number]; dup {
			p.add(key+".number", "%q is already configured as numbers[%d]", n.Number, j)
		} else {
			seenNumber[n.Number] = i
		}

		switch {
		case n.PhoneNumberID == "":
			if n.Mode == ModeAPI {
				p.add(key+".phone_number_id", "required when mode is api")
			}
		case !isDigits(n.PhoneNumberID):
			p.add(key+".phone_number_id", "%q is not a phone number id (digits only)", n.PhoneNumberID)
		default:
			if j, dup := seenID[n.PhoneNumberID]; dup {
				p.add(key+".phone_number_id", "%q is already used by numbers[%d]", n.PhoneNumberID, j)
			} else {
				seenID[n.PhoneNumberID] = i
			}
		}

		if ext := n.PBXRoute.Extension; ext != "" && strings.ContainsAny(ext, " \t@:;<>") {
			p.add(key+".pbx_route.extension", "%q is not a SIP user part (no spaces, @, :, ; or <>)", ext)
		}

		switch n.Mode {
		case ModeSIP:
			validateNumberSIP(p, key+".sip", &n.SIP)
			// An api block on a SIP number manages its settings (wabridge settings) and can
			// supply the SIP password (sip.password_from_api).
			if n.API.Provider != "" || n.SIP.PasswordFromAPI {
				validateNumberAPI(p, key+".api", n)
			}
		case ModeAPI:
			validateNumberAPI(p, key+".api", n)
			if c.HTTP.Listen == "" {
				p.add("http.listen", "required when a number has mode api: webhooks arrive there (at webhook.path)")
			}
		default:
			p.add(key+".mode", "%q is not a mode; use sip or api", n.Mode)
		}
	}
}

func validateNumberAPI(p *problems, key string, n *Number) {
	a := &n.API
	known := false
	for _, name := range apiProviders() {
		known = known || a.Provider == name
	}
	if !known {
		p.add(key+".provider", "%q is not a provider; use one of %s", a.Provider, strings.Join(apiProviders(), ", "))
	}
	if _, err := resolveNamedSecret("token", a.TokenInline, a.TokenFile, a.TokenEnv); err != nil {
		*p = append(*p, secretError(key, err))
	}
	if a.BaseURL != "" && !strings.HasPrefix(a.BaseURL, "https://") && !strings.HasPrefix(a.BaseURL, "http://") {
		p.add(key+".base_url", "%q is not an http(s) URL", a.BaseURL)
	}
	if a.Provider == "conceptomovil" && a.WABAID == "" {
		p.add(key+".waba_id", "required for conceptomovil (its settings path names the WABA)")
	}
}

func validateNumberSIP(p *problems, key string, s *NumberSIP) {
	switch {
	case s.Hostname == "":
		p.add(key+".hostname", "required: the SIP server hostname configured for this number at Meta (default: sip.hostname)")
	case !validHost(s.Hostname):
		p.add(key+".hostname", "%q is not a hostname or IP address", s.Hostname)
	}
	if s.PasswordFromAPI {
		if s.PasswordInline != "" || s.PasswordFile != "" || s.PasswordEnv != "" {
			p.add(key+".password_from_api", "set either password_from_api or one of password, password_file, password_env")
		}
	} else if _, err := resolveSecret(s.PasswordInline, s.PasswordFile, s.PasswordEnv); err != nil {
		*p = append(*p, secretError(key, err))
	}
	switch s.SRTP {
	case KeyExchangeSDES, KeyExchangeDTLS:
	case "":
		p.add(key+".srtp", "required: sdes or dtls, matching srtp_key_exchange_protocol at Meta (Meta's default is DTLS)")
	default:
		p.add(key+".srtp", "%q is not a key exchange; use sdes or dtls", s.SRTP)
	}
	if !validHost(s.Edge.Host) {
		p.add(key+".edge.host", "%q is not a hostname", s.Edge.Host)
	}
	if s.Edge.Address != "" {
		p.addErr(key+".edge.address", checkHostPort(s.Edge.Address, false))
	}
	if s.Register && strings.EqualFold(s.Edge.Host, DefaultEdgeHost) {
		p.add(key+".register", "Meta's edge (%s) answers REGISTER with 403; enable it only for BSP edges that need it", DefaultEdgeHost)
	}
	seen := map[string]bool{}
	for j, codec := range s.AdditionalCodecs {
		ckey := fmt.Sprintf("%s.additional_codecs[%d]", key, j)
		switch {
		case codec != "PCMA" && codec != "PCMU":
			p.add(ckey, "%q is not a codec Meta adds; use PCMA or PCMU (Opus is always on)", codec)
		case seen[codec]:
			p.add(ckey, "%s is listed twice", codec)
		}
		seen[codec] = true
	}
}

func (c *Config) validateLimits(p *problems) {
	l, m := &c.Limits, &c.Media
	if l.DrainTimeout < 0 {
		p.add("limits.drain_timeout", "must not be negative")
	}
	if l.MaxCalls < 0 {
		p.add("limits.max_calls", "must be 0 (no limit) or positive")
		return
	}
	// Each call holds an RTP/RTCP pair per leg; a max_calls the range cannot hold would fail
	// calls with "ports exhausted" instead of the clean busy the limit is meant to give.
	if pairs := (m.RTPPortMax - m.RTPPortMin + 1) / 2; l.MaxCalls > 0 && pairs > 0 && l.MaxCalls*2 > pairs {
		p.add("limits.max_calls", "%d calls need %d RTP/RTCP port pairs (two legs each) but media.rtp_port_min..rtp_port_max holds %d",
			l.MaxCalls, l.MaxCalls*2, pairs)
	}
}

// checkHostPort checks a "host:port" address. Listen addresses may omit the host (":5060") and
// use port 0 (an ephemeral port, for tests); remote addresses need both.
func checkHostPort(addr string, listen bool) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 || (port == 0 && !listen) {
		return fmt.Errorf("%q has no valid port", addr)
	}
	if host == "" && !listen {
		return fmt.Errorf("%q has no host", addr)
	}
	if host != "" && !validHost(host) {
		return fmt.Errorf("%q: %q is not a hostname or IP address", addr, host)
	}
	return nil
}

// validHost accepts an IP address or a DNS name (RFC 1123 labels).
func validHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// isE164 accepts '+' and 7 to 15 digits, the first not 0. E.164 caps numbers at 15 digits; the
// shortest in use (small countries' 4-digit subscriber numbers after a 3-digit code) have 7.
func isE164(s string) bool {
	d, ok := strings.CutPrefix(s, "+")
	return ok && len(d) >= 7 && len(d) <= 15 && d[0] != '0' && isDigits(d)
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func isUnspecifiedIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.IsUnspecified()
}
