package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/config/configtest"
)

type replacement struct{ old, new string }

// problem is one expected validation error: its key and a fragment of its message.
type problem struct{ key, msg string }

func TestValidationErrors(t *testing.T) {
	const unsetEnv = "WABRIDGE_TEST_PASSWORD_THAT_IS_NEVER_SET"
	tests := []struct {
		name  string
		edits []replacement
		// setup, when set, prepares doc further (after the certificate is in place).
		setup func(t *testing.T, doc string) string
		want  []problem // every problem, so unexpected extra errors fail the test
	}{
		{
			name:  "no password",
			edits: []replacement{{"      password: " + inlineSecret + "\n", ""}},
			want:  []problem{{"numbers[0].sip.password", "set exactly one of password, password_file, password_env"}},
		},
		{
			name:  "two passwords",
			edits: []replacement{{"      srtp: sdes", "      srtp: sdes\n      password_env: X"}},
			want:  []problem{{"numbers[0].sip.password", "set exactly one of password, password_file, password_env"}},
		},
		{
			name:  "password_file missing",
			edits: []replacement{{"password: " + inlineSecret, "password_file: /nonexistent/wabridge/pw"}},
			want:  []problem{{"numbers[0].sip.password_file", "/nonexistent/wabridge/pw: no such file"}},
		},
		{
			name:  "password_env not set",
			edits: []replacement{{"password: " + inlineSecret, "password_env: " + unsetEnv}},
			want:  []problem{{"numbers[0].sip.password_env", "environment variable " + unsetEnv + " is not set"}},
		},
		{
			name:  "odd rtp_port_min",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  public_ip: 203.0.113.10\n  rtp_port_min: 20001"}},
			want:  []problem{{"media.rtp_port_min", "must be even and < rtp_port_max"}},
		},
		{
			name:  "rtp_port_min above max",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  public_ip: 203.0.113.10\n  rtp_port_min: 30000\n  rtp_port_max: 29999"}},
			want:  []problem{{"media.rtp_port_min", "must be even and < rtp_port_max"}},
		},
		{
			name:  "rtp_port_max beyond 65535",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  public_ip: 203.0.113.10\n  rtp_port_max: 70000"}},
			want:  []problem{{"media.rtp_port_max", "must be a port number"}},
		},
		{
			name:  "rtp_port_min not a number",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  public_ip: 203.0.113.10\n  rtp_port_min: lots"}},
			want:  []problem{{"media.rtp_port_min", "cannot parse"}},
		},
		{
			name:  "short number",
			edits: []replacement{{`"+15551230002"`, `"+12"`}},
			want:  []problem{{"numbers[1].number", `"+12" is not E.164`}},
		},
		{
			name:  "number without plus (unquoted YAML int)",
			edits: []replacement{{`"+15551230002"`, `15551230002`}},
			want:  []problem{{"numbers[1].number", `"15551230002" is not E.164`}},
		},
		{
			name:  "duplicate number",
			edits: []replacement{{`"+15551230002"`, `"+15551230001"`}},
			want:  []problem{{"numbers[1].number", `"+15551230001" is already configured as numbers[0]`}},
		},
		{
			name:  "duplicate phone_number_id",
			edits: []replacement{{`"1234567891"`, `"1234567890"`}},
			want:  []problem{{"numbers[1].phone_number_id", `"1234567890" is already used by numbers[0]`}},
		},
		{
			name:  "phone_number_id not digits",
			edits: []replacement{{`"1234567891"`, `"abc"`}},
			want:  []problem{{"numbers[1].phone_number_id", "digits only"}},
		},
		{
			name:  "api number without phone_number_id",
			edits: []replacement{{"    phone_number_id: \"1234567891\"\n", ""}},
			want:  []problem{{"numbers[1].phone_number_id", "required when mode is api"}},
		},
		{
			name:  "unknown mode",
			edits: []replacement{{"mode: api", "mode: webrtc"}},
			want:  []problem{{"numbers[1].mode", `"webrtc" is not a mode; use sip or api`}},
		},
		{
			name:  "missing srtp",
			edits: []replacement{{"      srtp: sdes\n", ""}},
			want:  []problem{{"numbers[0].sip.srtp", "required: sdes or dtls"}},
		},
		{
			name:  "unknown srtp",
			edits: []replacement{{"srtp: sdes", "srtp: zrtp"}},
			want:  []problem{{"numbers[0].sip.srtp", `"zrtp" is not a key exchange`}},
		},
		{
			name:  "register toward Meta's edge",
			edits: []replacement{{"      srtp: sdes", "      srtp: sdes\n      register: true"}},
			want:  []problem{{"numbers[0].sip.register", "answers REGISTER with 403"}},
		},
		{
			name:  "register toward a BSP edge is fine",
			edits: []replacement{{"      srtp: sdes", "      srtp: sdes\n      register: true\n      edge: {host: sip.bsp.example}"}},
		},
		{
			name:  "bad and duplicate additional codecs",
			edits: []replacement{{"      srtp: sdes", "      srtp: sdes\n      additional_codecs: [pcmu, G729, PCMU]"}},
			want: []problem{
				{"numbers[0].sip.additional_codecs[1]", `"G729" is not a codec`},
				{"numbers[0].sip.additional_codecs[2]", "PCMU is listed twice"},
			},
		},
		{
			name:  "bad edge address",
			edits: []replacement{{"      srtp: sdes", "      srtp: sdes\n      edge: {address: wa.meta.vc}"}},
			want:  []problem{{"numbers[0].sip.edge.address", "is not host:port"}},
		},
		{
			name:  "bad pbx extension",
			edits: []replacement{{"    mode: api", "    mode: api\n    pbx_route: {extension: \"2000@pbx\"}"}},
			want:  []problem{{"numbers[1].pbx_route.extension", "is not a SIP user part"}},
		},
		{
			name:  "no numbers",
			setup: func(t *testing.T, doc string) string { return doc[:strings.Index(doc, "numbers:")] },
			want:  []problem{{"numbers", "at least one number is required"}},
		},
		{
			name:  "tls listener without certificate",
			edits: []replacement{{"    cert_file: CERT\n    key_file: KEY\n", ""}},
			want: []problem{
				{"sip.whatsapp_listen.cert_file", "required when sip.whatsapp_listen.tls is set"},
				{"sip.whatsapp_listen.key_file", "required when sip.whatsapp_listen.tls is set"},
			},
		},
		{
			name:  "certificate file missing",
			edits: []replacement{{"cert_file: CERT", "cert_file: /nonexistent/wabridge/cert.pem"}},
			want:  []problem{{"sip.whatsapp_listen.cert_file", "no such file"}},
		},
		{
			name: "certificate does not cover the number's hostname",
			setup: func(t *testing.T, doc string) string {
				cert, key := configtest.WriteCert(t, t.TempDir(), "other.example.com")
				return strings.NewReplacer("CERT", cert, "KEY", key).Replace(doc)
			},
			want: []problem{{"numbers[0].sip.hostname", `"sip.example.com" is not covered by the certificate in sip.whatsapp_listen.cert_file (it covers other.example.com)`}},
		},
		{
			name: "expired certificate",
			setup: func(t *testing.T, doc string) string {
				cert, key := configtest.WriteCertValidity(t, t.TempDir(),
					time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "sip.example.com")
				return strings.NewReplacer("CERT", cert, "KEY", key).Replace(doc)
			},
			want: []problem{{"sip.whatsapp_listen.cert_file", "certificate is not valid now"}},
		},
		{
			name:  "no tls listener with a sip number",
			edits: []replacement{{`tls: "127.0.0.1:0"`, `tls: ""`}},
			want:  []problem{{"sip.whatsapp_listen.tls", "required when a number has mode sip"}},
		},
		{
			name:  "whatsapp_ca_file missing",
			edits: []replacement{{"  hostname: sip.example.com\n", "  hostname: sip.example.com\n  whatsapp_ca_file: /nonexistent/ca.pem\n"}},
			want:  []problem{{"sip.whatsapp_ca_file", "no such file"}},
		},
		{
			name: "whatsapp_ca_file not PEM",
			setup: func(t *testing.T, doc string) string {
				ca := writeFile(t, "ca.pem", "not a certificate")
				return edit(t, doc, "  hostname: sip.example.com\n", "  hostname: sip.example.com\n  whatsapp_ca_file: "+ca+"\n")
			},
			want: []problem{{"sip.whatsapp_ca_file", "holds no PEM certificate"}},
		},
		{
			name:  "pbx.address not host:port",
			edits: []replacement{{"address: 127.0.0.1:5070", "address: pbx.example.com"}},
			want:  []problem{{"pbx.address", `"pbx.example.com" is not host:port`}},
		},
		{
			name:  "pbx.address missing",
			edits: []replacement{{"  address: 127.0.0.1:5070\n", ""}},
			want:  []problem{{"pbx.address", "required"}},
		},
		{
			name:  "pbx.address port 0",
			edits: []replacement{{"address: 127.0.0.1:5070", "address: 127.0.0.1:0"}},
			want:  []problem{{"pbx.address", "has no valid port"}},
		},
		{
			name:  "unknown transport",
			edits: []replacement{{"  address: 127.0.0.1:5070", "  address: 127.0.0.1:5070\n  transport: sctp"}},
			want:  []problem{{"pbx.transport", `"sctp" is not a transport`}},
		},
		{
			name: "transport without its listener",
			edits: []replacement{
				{"  hostname: sip.example.com\n", "  hostname: sip.example.com\n  pbx_listen: {udp: \"\"}\n"},
			},
			want: []problem{{"sip.pbx_listen.udp", "must be set when pbx.transport is udp"}},
		},
		{
			name:  "payload types",
			edits: []replacement{{"  address: 127.0.0.1:5070", "  address: 127.0.0.1:5070\n  opus_pt: 8\n  dtmf_pt: 8"}},
			want: []problem{
				{"pbx.opus_pt", "8 is not a dynamic payload type"},
				{"pbx.dtmf_pt", "8 is not a dynamic payload type"},
				{"pbx.dtmf_pt", "must differ from pbx.opus_pt"},
			},
		},
		{
			name:  "register enabled without credentials",
			edits: []replacement{{"  address: 127.0.0.1:5070", "  address: 127.0.0.1:5070\n  register: {enabled: true, expires: 10s}"}},
			want: []problem{
				{"pbx.register.username", "required when pbx.register.enabled is true"},
				{"pbx.register.password", "set exactly one of password, password_file, password_env"},
				{"pbx.register.expires", "must be at least 1m0s"},
			},
		},
		{
			name:  "register disabled ignores its fields",
			edits: []replacement{{"  address: 127.0.0.1:5070", "  address: 127.0.0.1:5070\n  register: {enabled: false, expires: 10s}"}},
		},
		{
			name:  "register with a bad registrar",
			edits: []replacement{{"  address: 127.0.0.1:5070", "  address: 127.0.0.1:5070\n  register: {enabled: true, username: u, password: p, registrar: pbx}"}},
			want:  []problem{{"pbx.register.registrar", `"pbx" is not host:port`}},
		},
		{
			name:  "log level and format",
			edits: []replacement{{"sip:\n", "log: {level: loud, format: xml}\nsip:\n"}},
			want: []problem{
				{"log.level", `"loud" is not a level`},
				{"log.format", `"xml" is not a format`},
			},
		},
		{
			name:  "public_ip missing with a wildcard bind_ip",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  bind_ip: \"::\""}},
			want:  []problem{{"media.public_ip", "required when media.bind_ip is ::"}},
		},
		{
			name:  "bind_ip not an IP",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  public_ip: 203.0.113.10\n  bind_ip: eth0"}},
			want:  []problem{{"media.bind_ip", `"eth0" is not an IP address`}},
		},
		{
			name:  "public_ip wildcard",
			edits: []replacement{{"public_ip: 203.0.113.10", "public_ip: 0.0.0.0"}},
			want:  []problem{{"media.public_ip", `"0.0.0.0" is not a concrete IP address`}},
		},
		{
			name:  "duration without unit",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  public_ip: 203.0.113.10\n  inactivity_timeout: 30"}},
			want:  []problem{{"media.inactivity_timeout", `30 has no unit; write a duration such as "30s"`}},
		},
		{
			name:  "duration not parseable",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  public_ip: 203.0.113.10\n  inactivity_timeout: soon"}},
			want:  []problem{{"media.inactivity_timeout", `"soon" is not a duration`}},
		},
		{
			name:  "zero duration",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  public_ip: 203.0.113.10\n  inactivity_timeout: 0s"}},
			want:  []problem{{"media.inactivity_timeout", "must be positive"}},
		},
		{
			name:  "max_calls beyond the port range",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  public_ip: 203.0.113.10\n  rtp_port_min: 40000\n  rtp_port_max: 40099\nlimits: {max_calls: 26}"}},
			want:  []problem{{"limits.max_calls", "26 calls need 52 RTP/RTCP port pairs (two legs each) but media.rtp_port_min..rtp_port_max holds 50"}},
		},
		{
			name:  "max_calls negative",
			edits: []replacement{{"sip:\n", "limits: {max_calls: -1}\nsip:\n"}},
			want:  []problem{{"limits.max_calls", "must be 0 (no limit) or positive"}},
		},
		{
			name:  "http.listen not host:port",
			edits: []replacement{{"http:\n  listen: \"127.0.0.1:0\"\n", "http: {listen: \"9090\"}\n"}},
			want:  []problem{{"http.listen", "is not host:port"}},
		},
		{
			name:  "bad sip.hostname",
			edits: []replacement{{"  hostname: sip.example.com\n", "  hostname: \"sip example\"\n"}},
			want: []problem{
				{"sip.hostname", `"sip example" is not a hostname`},
				{"numbers[0].sip.hostname", `"sip example" is not a hostname`},
			},
		},
		{
			name:  "unknown keys are named, with a suggestion",
			edits: []replacement{{"      srtp: sdes", "      srtp: sdes\n      pasword_file: /x"}, {"sip:\n", "limit: {max_calls: 1}\nsip:\n"}, {"  public_ip:", "  pubic_ip: 1.2.3.4\n  public_ip:"}},
			want: []problem{
				{"limit", "unknown key (did you mean limits?)"},
				{"media.pubic_ip", "unknown key (did you mean media.public_ip?)"},
				{"numbers[0].sip.pasword_file", "unknown key (did you mean numbers[0].sip.password_file?)"},
			},
		},
		{
			name:  "keys are case-sensitive",
			edits: []replacement{{"  public_ip: 203.0.113.10", "  Public_IP: 203.0.113.10"}},
			want: []problem{
				{"media.Public_IP", "unknown key (did you mean media.public_ip?)"},
				{"media.public_ip", "required when media.bind_ip is 0.0.0.0"},
			},
		},
		{
			name:  "a section given a scalar",
			edits: []replacement{{"http:\n  listen: \"127.0.0.1:0\"\n", "http: yes\n"}},
			want:  []problem{{"http", "expected a map"}, {"http.listen", "required when a number has mode api"}},
		},
		{
			name: "a mapping where a list belongs",
			setup: func(t *testing.T, doc string) string {
				return doc[:strings.Index(doc, "numbers:")] + "numbers: {number: \"+15551230001\"}\n"
			},
			want: []problem{
				{"numbers", "must be a list (start each entry with '- ')"},
				{"numbers", "at least one number is required"},
			},
		},
		{
			name:  "a single codec is a one-element list",
			edits: []replacement{{"      srtp: sdes", "      srtp: sdes\n      additional_codecs: PCMA"}},
		},
		{
			name: "every problem is reported at once",
			edits: []replacement{
				{`"+15551230002"`, `"+12"`},
				{"srtp: sdes", "srtp: zrtp"},
				{"address: 127.0.0.1:5070", "address: pbx"},
			},
			want: []problem{
				{"numbers[1].number", "is not E.164"},
				{"numbers[0].sip.srtp", "is not a key exchange"},
				{"pbx.address", "is not host:port"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := baseYAML
			for _, r := range tt.edits {
				doc = edit(t, doc, r.old, r.new)
			}
			if tt.setup != nil {
				doc = tt.setup(t, doc)
			}
			if strings.Contains(doc, "CERT") {
				doc = withCert(t, doc)
			}
			cfg, err := config.Parse([]byte(doc))
			got := problems(err)
			if len(tt.want) == 0 {
				require.NoError(t, err)
				require.NotNil(t, cfg)
				return
			}
			require.Error(t, err)
			assert.Nil(t, cfg)
			for _, w := range tt.want {
				assert.True(t, hasProblem(got, w), "want a problem %q containing %q; got:\n%s", w.key+": ", w.msg, strings.Join(got, "\n"))
			}
			assert.Len(t, got, len(tt.want), "unexpected extra problems:\n%s", strings.Join(got, "\n"))
			assert.NotContains(t, err.Error(), inlineSecret)
		})
	}
}

func hasProblem(got []string, w problem) bool {
	for _, g := range got {
		if strings.HasPrefix(g, w.key+": ") && strings.Contains(g, w.msg) {
			return true
		}
	}
	return false
}

func TestValidateOnBuiltConfig(t *testing.T) {
	cfg, err := config.Parse([]byte(withCert(t, baseYAML)))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())

	cfg.Numbers[0].SIP.SRTP = "none"
	cfg.Media.RTPPortMin = 1
	err = cfg.Validate()
	assert.ErrorContains(t, err, `numbers[0].sip.srtp: "none" is not a key exchange`)
	assert.ErrorContains(t, err, "media.rtp_port_min: must be even and < rtp_port_max")
	assert.Len(t, problems(err), 2)
}
