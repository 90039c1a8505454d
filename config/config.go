// Package config is wabridge's configuration: one typed struct loaded from YAML, overridden from
// the environment, defaulted and validated. Every default below is a named constant with the
// operational reason for its value, so this package doubles as the operator's reference.
//
// Secrets (Meta's per-number SIP password, the PBX registration password) are never held as plain
// strings in the struct: they are [Secret] values, which print as "[redacted]" under every fmt
// verb and encoder, and can be kept out of the file entirely with password_file or password_env.
package config

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// Defaults. Keys whose default is "" (disabled or derived from another key) are documented on
// the struct field instead.
const (
	DefaultLogLevel  = "info"
	DefaultLogFormat = LogFormatAuto

	// DefaultPBXListen is where the PBX's trunk points: 5060 is the registered SIP port
	// (RFC 3261 §19.1.2) and what Asterisk and FreeSWITCH trunks assume when no port is given.
	DefaultPBXListen = "0.0.0.0:5060"
	// DefaultWhatsAppListenTLS is where Meta connects for user-initiated calls: 5061 is SIP over
	// TLS's registered port and the port Meta assumes when sip.servers[].port is not set
	// (whatsapp-calling.md §1.2).
	DefaultWhatsAppListenTLS = "0.0.0.0:5061"

	DefaultBindIP = "0.0.0.0"
	// DefaultRTPPortMin and DefaultRTPPortMax give 10,000 ports. A call holds four (RTP and RTCP
	// for each of its two legs, see design.md), so this range carries 2,500 concurrent calls,
	// above Meta's 1,000 concurrent calls per number (whatsapp-calling.md §0 fact 20), and stays
	// clear of Linux's ephemeral range (32768–60999) so outgoing connections never take our ports.
	DefaultRTPPortMin = 20000
	DefaultRTPPortMax = 29999
	// DefaultInactivityTimeout: Meta hangs up a call after 20 s (at start) or 30 s (mid-call)
	// without business media (whatsapp-calling.md §4.7). When our peers go silent that long the
	// call is dead on Meta's side anyway, so we end both legs instead of holding a PBX channel open.
	DefaultInactivityTimeout = Duration(30 * time.Second)
	// DefaultDrainTimeout is how long SIGTERM waits for active calls before hanging them up.
	// WhatsApp calls are conversations with customers: a minute lets most finish, and the
	// systemd unit's TimeoutStopSec (90 s) leaves room for the BYEs after it.
	DefaultDrainTimeout = Duration(60 * time.Second)
	// DefaultWebhookPath is where providers POST call webhooks on http.listen.
	DefaultWebhookPath = "/webhook"
	// DefaultICETimeout: on loopback ICE + DTLS take ~50 ms; across the world with Meta's 1/2/4 s
	// DTLS retransmits a lost flight still lands well inside 10 s (whatsapp-calling.md §4.5).
	DefaultICETimeout = Duration(10 * time.Second)

	// DefaultPBXTransport is UDP because that is what PBX trunks use unless told otherwise.
	DefaultPBXTransport = TransportUDP
	// DefaultRegisterExpires re-registers every few minutes rather than the hour RFC 3261
	// suggests, so a restarted PBX learns our contact quickly and NAT bindings between us stay open.
	DefaultRegisterExpires = Duration(300 * time.Second)
	// MinRegisterExpires: Asterisk's pjsip rejects shorter registrations with 423 Interval Too
	// Brief (its minimum_expiration defaults to 60 s).
	MinRegisterExpires = Duration(60 * time.Second)

	// DefaultOpusPT is the payload type we offer the PBX for Opus. 111 is what Meta and WebRTC
	// use (whatsapp-calling.md §0 fact 3), so the same number means the same codec on both legs
	// in traces.
	DefaultOpusPT = 111
	// DefaultDTMFPT is what Asterisk and FreeSWITCH use for telephone-event. Meta offers 126; the
	// relay rewrites the payload type between legs, so each side gets the value it expects.
	DefaultDTMFPT = 101

	// DefaultMode is SIP signalling: the bridge's reason to exist. API mode (Graph calls and
	// webhooks) is accepted in the config but lands later.
	DefaultMode = ModeSIP
	// DefaultEdgeHost is Meta's SIP domain. Meta answers 404 when the Request-URI host is an IP
	// (whatsapp-calling.md §5.3), so the host is a name even when address says where to connect.
	DefaultEdgeHost = "wa.meta.vc"
	// DefaultEdgePort: Meta's edge only speaks SIP over TLS, on 5061 (whatsapp-calling.md §0 fact 12).
	DefaultEdgePort = 5061
)

// EnvPrefix starts every environment override; "__" separates levels, so WABRIDGE_PBX__ADDRESS
// sets pbx.address and WABRIDGE_SIP__PBX_LISTEN__UDP sets sip.pbx_listen.udp. Variables with the
// prefix but no "__" are not overrides; they are left alone so secrets can be named
// WABRIDGE_SOMETHING and referenced from password_env.
const EnvPrefix = "WABRIDGE_"

// LogFormat selects the log encoding.
type LogFormat string

const (
	LogFormatAuto LogFormat = "auto" // JSON when stdout is not a terminal (journald, docker), text on a terminal
	LogFormatJSON LogFormat = "json"
	LogFormatText LogFormat = "text"
)

// Transport is the SIP transport toward the PBX.
type Transport string

const (
	TransportUDP Transport = "udp"
	TransportTCP Transport = "tcp"
	TransportTLS Transport = "tls"
)

// Mode is how a number's calls are signalled. Meta makes the two mutually exclusive per number
// (whatsapp-calling.md §0 fact 1).
type Mode string

const (
	ModeSIP Mode = "sip" // SIP over TLS with Meta's edge (calling.sip.status = ENABLED)
	ModeAPI Mode = "api" // Graph calls endpoint and calls webhooks
)

// KeyExchange is how SRTP keys are agreed with WhatsApp. It must match the number's
// srtp_key_exchange_protocol at Meta, whose default is DTLS (whatsapp-calling.md §1.2).
type KeyExchange string

const (
	KeyExchangeSDES KeyExchange = "sdes" // keys in SDP a=crypto (RFC 4568); protected by the TLS signalling
	KeyExchangeDTLS KeyExchange = "dtls" // ICE + DTLS-SRTP, WebRTC style
)

// Config is the whole daemon configuration. Load and Parse return it defaulted and validated.
type Config struct {
	Log     Log      `yaml:"log" koanf:"log"`
	SIP     SIP      `yaml:"sip" koanf:"sip"`
	Media   Media    `yaml:"media" koanf:"media"`
	PBX     PBX      `yaml:"pbx" koanf:"pbx"`
	Numbers []Number `yaml:"numbers" koanf:"numbers"`
	Limits  Limits   `yaml:"limits" koanf:"limits"`
	Webhook Webhook  `yaml:"webhook" koanf:"webhook"`
	HTTP    HTTP     `yaml:"http" koanf:"http"`
}

// Log configures logging.
type Log struct {
	Level  string    `yaml:"level" koanf:"level"`   // logrus level name: trace, debug, info, warn, error
	Format LogFormat `yaml:"format" koanf:"format"` // auto, json or text
	// SIPTrace logs every SIP message on both legs. Off by default: it is verbose and the
	// messages carry phone numbers.
	SIPTrace bool `yaml:"sip_trace" koanf:"sip_trace"`
}

// SIP configures our SIP identity and listeners.
type SIP struct {
	// Hostname is advertised in our Contact and From headers. Default: media.public_ip.
	Hostname       string         `yaml:"hostname" koanf:"hostname"`
	PBXListen      PBXListen      `yaml:"pbx_listen" koanf:"pbx_listen"`
	WhatsAppListen WhatsAppListen `yaml:"whatsapp_listen" koanf:"whatsapp_listen"`
	// WhatsAppCAFile is a PEM bundle of extra CAs trusted for the WhatsApp edge's certificate
	// (a test emulator, a BSP's private CA). The system roots are always trusted as well.
	WhatsAppCAFile string `yaml:"whatsapp_ca_file" koanf:"whatsapp_ca_file"`
}

// PBXListen holds the PBX-facing listen addresses (host:port). "" disables that transport.
type PBXListen struct {
	UDP string `yaml:"udp" koanf:"udp"`
	TCP string `yaml:"tcp" koanf:"tcp"`
	// TLS serves the PBX over SIP/TLS with the sip.whatsapp_listen certificate. Off by default:
	// most trunks to a PBX on the same LAN are UDP. Required when pbx.transport is tls.
	TLS string `yaml:"tls" koanf:"tls"`
}

// WhatsAppListen is the TLS listener Meta connects to for user-initiated calls.
type WhatsAppListen struct {
	TLS string `yaml:"tls" koanf:"tls"` // host:port; "" disables (then only outgoing calls work)
	// CertFile must be a certificate (chain) Meta accepts for each number's sip.hostname: Meta
	// verifies it and drops the call otherwise, which is the most common reason for "no INVITE
	// received" (whatsapp-calling.md §5.1). Validate checks the names and expiry.
	CertFile string `yaml:"cert_file" koanf:"cert_file"`
	KeyFile  string `yaml:"key_file" koanf:"key_file"`
}

// Media configures RTP sockets.
type Media struct {
	BindIP string `yaml:"bind_ip" koanf:"bind_ip"`
	// PublicIP is the address advertised in SDP. Required when BindIP is unspecified (0.0.0.0 or
	// ::); otherwise it defaults to BindIP.
	PublicIP          string   `yaml:"public_ip" koanf:"public_ip"`
	RTPPortMin        int      `yaml:"rtp_port_min" koanf:"rtp_port_min"` // even: RTP takes the even port, RTCP the next (RFC 3550 §11)
	RTPPortMax        int      `yaml:"rtp_port_max" koanf:"rtp_port_max"`
	InactivityTimeout Duration `yaml:"inactivity_timeout" koanf:"inactivity_timeout"`
	// ICETimeout bounds ICE plus the DTLS handshake on DTLS numbers; a call that has not
	// connected by then is ended on both legs (408 toward a PBX still waiting).
	ICETimeout Duration `yaml:"ice_timeout" koanf:"ice_timeout"`
}

// PBX describes the PBX trunk: where user-initiated calls go and where business-initiated calls
// come from.
type PBX struct {
	Address   string      `yaml:"address" koanf:"address"` // host:port of the PBX trunk; required
	Transport Transport   `yaml:"transport" koanf:"transport"`
	SRTP      bool        `yaml:"srtp" koanf:"srtp"` // SDES-SRTP toward the PBX; plain RTP otherwise
	Register  PBXRegister `yaml:"register" koanf:"register"`
	// CAFile is a PEM bundle of extra CAs trusted for the PBX's certificate with transport tls
	// (a PBX with a private CA or a self-signed certificate). System roots are always trusted.
	CAFile string `yaml:"ca_file" koanf:"ca_file"`
	OpusPT int    `yaml:"opus_pt" koanf:"opus_pt"`
	DTMFPT int    `yaml:"dtmf_pt" koanf:"dtmf_pt"`
}

// PBXRegister makes the bridge register to the PBX, for PBXs that only send calls to registered
// contacts. When Enabled, Username and exactly one of password, password_file and password_env
// are required.
type PBXRegister struct {
	Enabled  bool   `yaml:"enabled" koanf:"enabled"`
	Username string `yaml:"username" koanf:"username"`
	// PasswordInline is the YAML key "password" (the Password method has the Go name).
	PasswordInline Secret   `yaml:"password" koanf:"password"`
	PasswordFile   string   `yaml:"password_file" koanf:"password_file"` // contents trimmed of surrounding whitespace
	PasswordEnv    string   `yaml:"password_env" koanf:"password_env"`
	Expires        Duration `yaml:"expires" koanf:"expires"`
	Registrar      string   `yaml:"registrar" koanf:"registrar"` // host:port; default: pbx.address
}

// Password returns the registration password from whichever source is configured, read now so a
// rotated file or variable takes effect without a restart.
func (r *PBXRegister) Password() (string, error) {
	s, err := resolveSecret(r.PasswordInline, r.PasswordFile, r.PasswordEnv)
	if err != nil {
		return "", secretError("pbx.register", err)
	}
	return s, nil
}

// Number is one WhatsApp business number.
type Number struct {
	Number        string    `yaml:"number" koanf:"number"`                   // E.164 with '+', e.g. "+15551230001"
	PhoneNumberID string    `yaml:"phone_number_id" koanf:"phone_number_id"` // Meta's id; required for mode api
	Mode          Mode      `yaml:"mode" koanf:"mode"`
	SIP           NumberSIP `yaml:"sip" koanf:"sip"` // used when Mode is sip
	API           NumberAPI `yaml:"api" koanf:"api"` // used when Mode is api
	PBXRoute      PBXRoute  `yaml:"pbx_route" koanf:"pbx_route"`
}

// NumberSIP is a number's SIP trunk with Meta (or a BSP's SIP edge).
type NumberSIP struct {
	// Hostname is the SIP server hostname configured for the number at Meta: the From host of
	// our INVITEs and the name our certificate must carry. Default: sip.hostname.
	Hostname string `yaml:"hostname" koanf:"hostname"`
	// PasswordInline (YAML key "password") is Meta's per-number SIP password (GET
	// settings?include_sip_credentials=true). Set exactly one of password, password_file,
	// password_env; the last two keep the secret out of the config file.
	PasswordInline Secret `yaml:"password" koanf:"password"`
	PasswordFile   string `yaml:"password_file" koanf:"password_file"` // contents trimmed of surrounding whitespace
	PasswordEnv    string `yaml:"password_env" koanf:"password_env"`
	// PasswordFromAPI reads the password from the settings API at start and on reload (GET
	// settings?include_sip_credentials=true, with the number's api block) instead of from
	// password/password_file/password_env.
	PasswordFromAPI bool        `yaml:"password_from_api" koanf:"password_from_api"`
	SRTP            KeyExchange `yaml:"srtp" koanf:"srtp"` // required: a silent default would hide a mismatch with Meta
	Edge            Edge        `yaml:"edge" koanf:"edge"`
	// Register sends REGISTER to the edge, for BSP edges that need it. Meta's own edge answers
	// 403 (whatsapp-calling.md §5.4), so it is rejected with the default edge.
	Register bool `yaml:"register" koanf:"register"`
	// AdditionalCodecs lists PCMA/PCMU when enabled at Meta (calling.audio.additional_codecs);
	// Opus is always offered.
	AdditionalCodecs []string `yaml:"additional_codecs" koanf:"additional_codecs"`
}

// apiProviders are the API-mode providers wabridge has adapters for (package bsp, which sits
// above config in the import graph, so the names are repeated here).
func apiProviders() []string {
	return []string{"meta", "positus", "vectalk", "conceptomovil", "360dialog"}
}

// NumberAPI is a number reached through a provider's HTTP call actions and webhooks (Meta's
// Graph API or a BSP's proxy of it) instead of SIP.
type NumberAPI struct {
	Provider   string `yaml:"provider" koanf:"provider"`       // meta, positus, vectalk, conceptomovil or 360dialog
	BaseURL    string `yaml:"base_url" koanf:"base_url"`       // default: the provider's production API
	APIVersion string `yaml:"api_version" koanf:"api_version"` // Graph version (meta); default in package bsp
	WABAID     string `yaml:"waba_id" koanf:"waba_id"`         // Concepto Móvil's settings path needs it
	// CheckPermission reads the user's call permission before each business-initiated call and
	// refuses with 403 at once when it is missing, instead of spending a connect (which counts
	// toward Meta's limits) only to get 138006 back.
	CheckPermission bool `yaml:"check_permission" koanf:"check_permission"`
	// The provider's access token (Meta: a system-user token; 360dialog: the D360-API-KEY).
	// Exactly one of token, token_file, token_env.
	TokenInline Secret `yaml:"token" koanf:"token"`
	TokenFile   string `yaml:"token_file" koanf:"token_file"`
	TokenEnv    string `yaml:"token_env" koanf:"token_env"`
}

// APIToken returns the number's provider token, read now so a rotated file takes effect.
func (n *Number) APIToken() (string, error) {
	s, err := resolveNamedSecret("token", n.API.TokenInline, n.API.TokenFile, n.API.TokenEnv)
	if err != nil {
		return "", secretError("numbers["+n.Number+"].api", err)
	}
	return s, nil
}

// Webhook is where providers deliver call webhooks in API mode (served on http.listen).
type Webhook struct {
	Path string `yaml:"path" koanf:"path"` // default /webhook
	// VerifyToken answers Meta's GET verification (hub.verify_token). Optional.
	VerifyTokenInline Secret `yaml:"verify_token" koanf:"verify_token"`
	VerifyTokenFile   string `yaml:"verify_token_file" koanf:"verify_token_file"`
	VerifyTokenEnv    string `yaml:"verify_token_env" koanf:"verify_token_env"`
	// AppSecret checks X-Hub-Signature-256 on every POST (HMAC-SHA256 of the raw body); when
	// set, unsigned or wrongly signed deliveries are refused before anything is parsed.
	AppSecretInline Secret `yaml:"app_secret" koanf:"app_secret"`
	AppSecretFile   string `yaml:"app_secret_file" koanf:"app_secret_file"`
	AppSecretEnv    string `yaml:"app_secret_env" koanf:"app_secret_env"`
}

// VerifyToken returns the webhook verify token, or "" when none is configured.
func (w *Webhook) VerifyToken() (string, error) {
	return optionalSecret("webhook", "verify_token", w.VerifyTokenInline, w.VerifyTokenFile, w.VerifyTokenEnv)
}

// AppSecret returns the app secret for signature checks, or "" when none is configured.
func (w *Webhook) AppSecret() (string, error) {
	return optionalSecret("webhook", "app_secret", w.AppSecretInline, w.AppSecretFile, w.AppSecretEnv)
}

func optionalSecret(prefix, name string, inline Secret, file, env string) (string, error) {
	if inline == "" && file == "" && env == "" {
		return "", nil
	}
	s, err := resolveNamedSecret(name, inline, file, env)
	if err != nil {
		return "", secretError(prefix, err)
	}
	return s, nil
}

// Edge is the WhatsApp SIP edge a number's business-initiated calls go to.
type Edge struct {
	Host    string `yaml:"host" koanf:"host"`       // Request-URI host; default wa.meta.vc
	Address string `yaml:"address" koanf:"address"` // host:port to connect to; default host:5061
}

// PBXRoute says how calls to this number reach the PBX.
type PBXRoute struct {
	// Extension is the Request-URI user toward the PBX for user-initiated calls. Default: the
	// number without '+', which is what Meta's Asterisk/FreeSWITCH samples match on.
	Extension string `yaml:"extension" koanf:"extension"`
}

// Limits caps load.
type Limits struct {
	MaxCalls int `yaml:"max_calls" koanf:"max_calls"` // concurrent calls; 0 = no limit beyond the RTP port range
	// DrainTimeout bounds a graceful stop (SIGTERM): new calls get 503 at once, active ones may
	// finish for this long, then both legs of the rest are hung up.
	DrainTimeout Duration `yaml:"drain_timeout" koanf:"drain_timeout"`
}

// HTTP is the health/metrics listener.
type HTTP struct {
	Listen string `yaml:"listen" koanf:"listen"` // host:port; "" disables
}

// Number returns the configured number matching e164. The argument is normalized first: user
// parameters after ';' (Meta appends request_uri_user_params to the Request-URI user,
// whatsapp-calling.md §1.2), spaces, dashes, dots and parentheses are dropped and a missing '+'
// is added, so "+1 (555) 123-0001" and "15551230001;tgrp=wa" both find "+15551230001".
func (c *Config) Number(e164 string) (*Number, bool) {
	want := normalizeNumber(e164)
	for i := range c.Numbers {
		if normalizeNumber(c.Numbers[i].Number) == want {
			return &c.Numbers[i], true
		}
	}
	return nil, false
}

// SIPPassword returns Meta's SIP password for the number from whichever source is configured,
// read now so a password rotated at Meta (whatsapp-calling.md §1.5) and rewritten to the file
// takes effect without a restart.
func (n *Number) SIPPassword() (string, error) {
	s, err := resolveSecret(n.SIP.PasswordInline, n.SIP.PasswordFile, n.SIP.PasswordEnv)
	if err != nil {
		return "", secretError("number "+n.Number+": sip", err)
	}
	return s, nil
}

// DigestUsername is the digest username Meta expects: the business number's digits without '+'
// (whatsapp-calling.md §0 fact 13).
func (n *Number) DigestUsername() string {
	return strings.TrimPrefix(normalizeNumber(n.Number), "+")
}

// EdgeAddress is the host:port to connect to for business-initiated calls.
func (n *Number) EdgeAddress() string {
	if n.SIP.Edge.Address != "" {
		return n.SIP.Edge.Address
	}
	host := n.SIP.Edge.Host
	if host == "" {
		host = DefaultEdgeHost
	}
	return net.JoinHostPort(host, strconv.Itoa(DefaultEdgePort))
}

// PBXExtension is the Request-URI user for this number's user-initiated calls toward the PBX.
func (n *Number) PBXExtension() string {
	if n.PBXRoute.Extension != "" {
		return n.PBXRoute.Extension
	}
	return n.DigestUsername()
}

// normalizeNumber reduces a dialled or configured number to "+digits" (see Config.Number).
// Anything that is not a number after cleaning is returned cleaned, so it simply matches nothing.
func normalizeNumber(s string) string {
	s, _, _ = strings.Cut(s, ";")
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '.', '(', ')':
			return -1
		}
		return r
	}, s)
	if s != "" && s[0] != '+' {
		s = "+" + s
	}
	return s
}
