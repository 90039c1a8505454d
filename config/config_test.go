package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/config/configtest"
)

// inlineSecret is the password in baseYAML; redaction tests assert it never shows up.
const inlineSecret = "hunter2-inline-secret"

// baseYAML is a small valid config; tests edit it with edit(). CERT and KEY are replaced with
// files made for sip.example.com.
const baseYAML = `
sip:
  hostname: sip.example.com
  whatsapp_listen:
    tls: "127.0.0.1:0"
    cert_file: CERT
    key_file: KEY
media:
  public_ip: 203.0.113.10
pbx:
  address: 127.0.0.1:5070
http:
  listen: "127.0.0.1:0"
numbers:
  - number: "+15551230001"
    phone_number_id: "1234567890"
    sip:
      password: ` + inlineSecret + `
      srtp: sdes
  - number: "+15551230002"
    phone_number_id: "1234567891"
    mode: api
    api: {provider: meta, token: graph-token-secret}
`

// withCert returns doc with CERT and KEY pointing at a fresh certificate for sip.example.com.
func withCert(t *testing.T, doc string) string {
	t.Helper()
	cert, key := configtest.WriteCert(t, t.TempDir(), "sip.example.com")
	return strings.NewReplacer("CERT", cert, "KEY", key).Replace(doc)
}

// edit replaces old with new in doc, failing if old is absent so a stale edit cannot silently
// turn a test into a test of the unmodified config.
func edit(t *testing.T, doc, old, new string) string {
	t.Helper()
	require.Contains(t, doc, old, "edit target missing from config")
	return strings.Replace(doc, old, new, 1)
}

// problems lists the individual problems in a Load/Parse error.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		var out []string
		for _, e := range joined.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestParseValidAppliesDefaults(t *testing.T) {
	cfg, err := config.Parse([]byte(withCert(t, baseYAML)))
	require.NoError(t, err)

	assert.Equal(t, config.DefaultLogLevel, cfg.Log.Level)
	assert.Equal(t, config.LogFormatAuto, cfg.Log.Format)
	assert.Equal(t, "0.0.0.0:5060", cfg.SIP.PBXListen.UDP)
	assert.Equal(t, "0.0.0.0:5060", cfg.SIP.PBXListen.TCP)
	assert.Equal(t, "0.0.0.0", cfg.Media.BindIP)
	assert.Equal(t, 20000, cfg.Media.RTPPortMin)
	assert.Equal(t, 29999, cfg.Media.RTPPortMax)
	assert.Equal(t, 30*time.Second, cfg.Media.InactivityTimeout.Duration())
	assert.Equal(t, config.TransportUDP, cfg.PBX.Transport)
	assert.Equal(t, 111, cfg.PBX.OpusPT)
	assert.Equal(t, 101, cfg.PBX.DTMFPT)
	assert.Equal(t, 300*time.Second, cfg.PBX.Register.Expires.Duration())
	assert.Equal(t, "127.0.0.1:5070", cfg.PBX.Register.Registrar, "registrar defaults to pbx.address")

	require.Len(t, cfg.Numbers, 2)
	n := cfg.Numbers[0]
	assert.Equal(t, config.ModeSIP, n.Mode, "mode defaults to sip")
	assert.Equal(t, "sip.example.com", n.SIP.Hostname, "number hostname defaults to sip.hostname")
	assert.Equal(t, config.KeyExchangeSDES, n.SIP.SRTP)
	assert.Equal(t, "wa.meta.vc", n.SIP.Edge.Host)
	assert.Equal(t, config.ModeAPI, cfg.Numbers[1].Mode)
}

func TestDerivedDefaults(t *testing.T) {
	tests := []struct {
		name         string
		old, new     string
		wantPublicIP string
		wantHostname string
	}{
		{
			name: "hostname defaults to public_ip",
			old:  "  hostname: sip.example.com\n", new: "",
			wantPublicIP: "203.0.113.10", wantHostname: "203.0.113.10",
		},
		{
			name: "public_ip defaults to a concrete bind_ip",
			old:  "  public_ip: 203.0.113.10", new: "  bind_ip: 198.51.100.7",
			wantPublicIP: "198.51.100.7", wantHostname: "sip.example.com",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Without sip.hostname the number's hostname becomes the IP, so use a certificate
			// for it too.
			dir := t.TempDir()
			cert, key := configtest.WriteCert(t, dir, "sip.example.com", tt.wantHostname)
			doc := strings.NewReplacer("CERT", cert, "KEY", key).Replace(baseYAML)
			cfg, err := config.Parse([]byte(edit(t, doc, tt.old, tt.new)))
			require.NoError(t, err)
			assert.Equal(t, tt.wantPublicIP, cfg.Media.PublicIP)
			assert.Equal(t, tt.wantHostname, cfg.SIP.Hostname)
			assert.Equal(t, tt.wantHostname, cfg.Numbers[0].SIP.Hostname)
		})
	}
}

func TestNumberLookup(t *testing.T) {
	cfg, err := config.Parse([]byte(withCert(t, baseYAML)))
	require.NoError(t, err)

	tests := []struct {
		query string
		want  int // index in cfg.Numbers; -1 = not found
	}{
		{"+15551230001", 0},
		{"15551230001", 0},                              // digest-style, no '+'
		{"+1 (555) 123-0001", 0},                        // human formatting
		{"+15551230001;tgrp=wacall;trunk-context=x", 0}, // Meta's request_uri_user_params
		{"+15551230002", 1},
		{"+15551239999", -1},
		{"", -1},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			n, ok := cfg.Number(tt.query)
			if tt.want < 0 {
				assert.False(t, ok)
				assert.Nil(t, n)
				return
			}
			require.True(t, ok)
			assert.Same(t, &cfg.Numbers[tt.want], n, "returns a pointer into cfg.Numbers")
		})
	}
}

func TestNumberMethods(t *testing.T) {
	tests := []struct {
		name          string
		n             config.Number
		wantUser      string
		wantEdge      string
		wantExtension string
	}{
		{
			name:     "defaults",
			n:        config.Number{Number: "+15551230001"},
			wantUser: "15551230001", wantEdge: "wa.meta.vc:5061", wantExtension: "15551230001",
		},
		{
			name: "edge host without address connects to host:5061",
			n: config.Number{Number: "+5511987654321", SIP: config.NumberSIP{Edge: config.Edge{Host: "sip.bsp.example"}},
				PBXRoute: config.PBXRoute{Extension: "2000"}},
			wantUser: "5511987654321", wantEdge: "sip.bsp.example:5061", wantExtension: "2000",
		},
		{
			name:     "explicit edge address wins",
			n:        config.Number{Number: "+15551230001", SIP: config.NumberSIP{Edge: config.Edge{Host: "wa.meta.vc", Address: "127.0.0.1:15061"}}},
			wantUser: "15551230001", wantEdge: "127.0.0.1:15061", wantExtension: "15551230001",
		},
		{
			name:     "IPv6 edge host is bracketed",
			n:        config.Number{Number: "+15551230001", SIP: config.NumberSIP{Edge: config.Edge{Host: "2001:db8::1"}}},
			wantUser: "15551230001", wantEdge: "[2001:db8::1]:5061", wantExtension: "15551230001",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.wantUser, tt.n.DigestUsername())
			assert.Equal(t, tt.wantEdge, tt.n.EdgeAddress())
			assert.Equal(t, tt.wantExtension, tt.n.PBXExtension())
		})
	}
}

func TestDuration(t *testing.T) {
	var d config.Duration
	require.NoError(t, d.UnmarshalText([]byte("1m30s")))
	assert.Equal(t, 90*time.Second, d.Duration())
	assert.Equal(t, "1m30s", d.String())
	b, err := d.MarshalText()
	require.NoError(t, err)
	assert.Equal(t, "1m30s", string(b))
	assert.ErrorContains(t, d.UnmarshalText([]byte("90")), `"90" is not a duration`)
}
