package opstest

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Asterisk and FreeSWITCH are not packaged in Debian 12, so their kits get the checks we can
// run without them: the files parse, every option name is one the PBX knows (lists taken from
// their sources, see below), the kits agree with each other and with what wabridge sends
// (header names from bridge/, numbers from examples/wabridge.yaml).

// exampleNumber is one numbers[] entry of examples/wabridge.yaml.
type exampleNumber struct {
	Number    string // E.164 with '+'
	Mode      string // sip or api
	Extension string // the Request-URI user wabridge uses toward the PBX
}

// exampleNumbers reads numbers[] from examples/wabridge.yaml. It is a line-based reader for the
// example's layout, because config.Parse also validates, which needs the certificate and the
// secrets the example only names.
func exampleNumbers(t testing.TB) []exampleNumber {
	t.Helper()
	text := readRepoFile(t, "examples/wabridge.yaml")
	_, list, ok := strings.Cut(text, "\nnumbers:\n")
	require.True(t, ok, "examples/wabridge.yaml has no numbers: list")
	item := regexp.MustCompile(`^  - number:\s*"(\+\d+)"`)
	field := func(chunk, key string) string {
		m := regexp.MustCompile(`(?m)^\s+` + key + `:\s*"?([^"#\s]*)"?`).FindStringSubmatch(chunk)
		if m == nil {
			return ""
		}
		return m[1]
	}
	var nums []exampleNumber
	var chunk []string
	flush := func() {
		if len(chunk) == 0 {
			return
		}
		c := strings.Join(chunk, "\n")
		n := exampleNumber{Number: item.FindStringSubmatch(chunk[0])[1], Mode: field(c, "mode"), Extension: field(c, "extension")}
		if n.Mode == "" {
			n.Mode = "sip"
		}
		if n.Extension == "" {
			n.Extension = strings.TrimPrefix(n.Number, "+")
		}
		nums = append(nums, n)
		chunk = nil
	}
	for _, line := range strings.Split(list, "\n") {
		if line != "" && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "#") {
			break // the next top-level key
		}
		if item.MatchString(line) {
			flush()
		}
		if len(chunk) > 0 || item.MatchString(line) {
			chunk = append(chunk, line)
		}
	}
	flush()
	require.NotEmpty(t, nums, "no numbers found in examples/wabridge.yaml")
	return nums
}

// ---- Asterisk ----

// asteriskOptions are the pjsip.conf options the kit may use, per object type, each checked
// against Asterisk's source (res/res_pjsip/pjsip_configuration.c, config_transport.c,
// location.c, res/res_pjsip_endpoint_identifier_ip.c; master of 2026-08). Add to the list only
// after checking an option there.
var asteriskOptions = map[string][]string{
	"transport": {"type", "protocol", "bind", "tos", "cos"},
	"endpoint": {"type", "transport", "context", "aors", "allow", "direct_media", "rtp_symmetric", "force_rport",
		"rewrite_contact", "dtmf_mode", "media_encryption", "rtp_timeout", "timers", "100rel", "allow_transfer",
		"identify_by", "tos_audio", "cos_audio", "media_encryption_optimistic"},
	"aor":      {"type", "contact", "qualify_frequency", "qualify_timeout"},
	"identify": {"type", "endpoint", "match"},
}

// confSection is one [section] of an Asterisk config file; names may repeat (pjsip.conf uses
// one name for the endpoint, aor and identify of a trunk).
type confSection struct {
	name  string
	lines []confLine
}

type confLine struct {
	n          int
	key, value string
	arrow      bool // "=>" (dialplan) rather than "="
}

func (s confSection) get(key string) []string {
	var out []string
	for _, l := range s.lines {
		if l.key == key {
			out = append(out, l.value)
		}
	}
	return out
}

func (s confSection) one(t testing.TB, key string) string {
	t.Helper()
	v := s.get(key)
	require.Len(t, v, 1, "[%s] %s must be set once", s.name, key)
	return v[0]
}

// parseAsteriskConf parses Asterisk's config syntax: [section], key = value or key => value,
// ';' comments.
func parseAsteriskConf(t testing.TB, name, text string) []confSection {
	t.Helper()
	var out []confSection
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, ";"); i >= 0 && (i == 0 || line[i-1] != '\\') {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "["):
			require.Regexp(t, `^\[[A-Za-z0-9_-]+\]$`, line, "%s line %d: section header", name, n)
			out = append(out, confSection{name: line[1 : len(line)-1]})
		default:
			require.NotEmpty(t, out, "%s line %d: setting outside a section", name, n)
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "%s line %d: want key = value, got %q", name, n, line)
			arrow := strings.HasPrefix(v, ">")
			v = strings.TrimPrefix(v, ">")
			l := confLine{n: n, key: strings.TrimSpace(k), value: strings.TrimSpace(v), arrow: arrow}
			require.Regexp(t, `^[A-Za-z0-9_]+$`, l.key, "%s line %d: key", name, n)
			out[len(out)-1].lines = append(out[len(out)-1].lines, l)
		}
	}
	require.NoError(t, sc.Err())
	return out
}

func TestAsteriskPJSIP(t *testing.T) {
	t.Parallel()
	sections := parseAsteriskConf(t, "pjsip.conf", readRepoFile(t, "examples/asterisk/pjsip.conf"))
	byType := map[string][]confSection{}
	for _, s := range sections {
		typ := s.one(t, "type")
		known, ok := asteriskOptions[typ]
		require.True(t, ok, "[%s] type=%s is not one the kit expects", s.name, typ)
		for _, l := range s.lines {
			assert.Contains(t, known, l.key, "[%s] (type=%s) line %d: option not in the checked list", s.name, typ, l.n)
			assert.False(t, l.arrow, "[%s] line %d: pjsip.conf uses '=', not '=>'", s.name, l.n)
		}
		byType[typ] = append(byType[typ], s)
	}
	require.Len(t, byType["endpoint"], 1)
	ep := byType["endpoint"][0]
	for key, want := range map[string]string{
		"direct_media":     "no", // media must stay anchored: one SSRC toward WhatsApp
		"rtp_symmetric":    "yes",
		"force_rport":      "yes",
		"rewrite_contact":  "yes",
		"dtmf_mode":        "rfc4733",
		"media_encryption": "no",
		"context":          "from-whatsapp",
		"100rel":           "no",
	} {
		assert.Equal(t, want, ep.one(t, key), "endpoint %s", key)
	}
	codecs := strings.Split(ep.one(t, "allow"), ",")
	require.GreaterOrEqual(t, len(codecs), 2)
	assert.Equal(t, []string{"!all", "opus"}, codecs[:2], "allow: clear the list, then Opus first")

	// References resolve.
	names := func(typ string) []string {
		var out []string
		for _, s := range byType[typ] {
			out = append(out, s.name)
		}
		return out
	}
	assert.Contains(t, names("transport"), ep.one(t, "transport"))
	assert.Contains(t, names("aor"), ep.one(t, "aors"))
	require.Len(t, byType["identify"], 1)
	assert.Equal(t, ep.name, byType["identify"][0].one(t, "endpoint"))
	assert.Regexp(t, `^\d+\.\d+\.\d+\.\d+$`, byType["identify"][0].one(t, "match"))
	require.Len(t, byType["aor"], 1)
	assert.Regexp(t, `^sip:[0-9.]+:\d+$`, byType["aor"][0].one(t, "contact"))
}

func TestAsteriskDialplan(t *testing.T) {
	t.Parallel()
	text := readRepoFile(t, "examples/asterisk/extensions.conf")
	sections := parseAsteriskConf(t, "extensions.conf", text)
	contexts := map[string]confSection{}
	for _, s := range sections {
		_, dup := contexts[s.name]
		require.False(t, dup, "context [%s] defined twice", s.name)
		contexts[s.name] = s
	}
	globals := map[string]string{}
	for _, l := range contexts["globals"].lines {
		globals[l.key] = l.value
	}

	// Every dialplan line is exten/same/include with balanced brackets, and every context it
	// jumps to exists.
	jump := regexp.MustCompile(`\b(?:Gosub|Goto)\(([A-Za-z0-9_-]+),[^,()]+,[^,()]+\)|\bb\(([A-Za-z0-9_-]+)\^`)
	for name, s := range contexts {
		if name == "globals" {
			continue
		}
		for _, l := range s.lines {
			require.True(t, l.arrow, "[%s] line %d: dialplan lines use =>", name, l.n)
			switch l.key {
			case "exten":
				assert.Regexp(t, `^(_?[+\w.\[\]-]+),(\d+|n|hint),\w+\(.*\)$`, l.value, "[%s] line %d", name, l.n)
			case "same":
				assert.Regexp(t, `^n,\w+\(.*\)$`, l.value, "[%s] line %d", name, l.n)
			case "include":
				assert.Contains(t, contexts, l.value, "[%s] line %d: include of an undefined context", name, l.n)
			default:
				t.Errorf("[%s] line %d: unexpected %q", name, l.n, l.key)
			}
			assertBalanced(t, l.value, fmt.Sprintf("extensions.conf line %d", l.n))
			for _, m := range jump.FindAllStringSubmatch(l.value, -1) {
				target := m[1] + m[2]
				assert.Contains(t, contexts, target, "[%s] line %d: jump to undefined context %q", name, l.n, target)
			}
		}
	}

	// Calls from wabridge land in the endpoint's context, one extension per configured number.
	inbound, ok := contexts["from-whatsapp"]
	require.True(t, ok, "no [from-whatsapp] context (pjsip.conf endpoint context)")
	var exts []string
	for _, v := range inbound.get("exten") {
		exts = append(exts, strings.SplitN(v, ",", 2)[0])
	}
	for _, num := range exampleNumbers(t) {
		assert.Contains(t, exts, num.Extension, "from-whatsapp has no extension for %s", num.Number)
	}
	// Every header wabridge sends is read into a variable.
	for _, h := range sipHeaderNames(t) {
		assert.Contains(t, text, "PJSIP_HEADER(read,"+h+")", "extensions.conf does not read %s", h)
	}

	// Business-initiated calls go to the trunk with the business number as a header, added in a
	// pre-dial handler (the outgoing channel is the only place PJSIP_HEADER(add) works).
	assert.Equal(t, "wabridge", globals["WA_TRUNK"], "WA_TRUNK must name the pjsip.conf endpoint")
	biz := globals["WA_BUSINESS_NUMBER"]
	num, ok := findNumber(exampleNumbers(t), biz)
	require.True(t, ok, "WA_BUSINESS_NUMBER %q is not a number in examples/wabridge.yaml", biz)
	assert.Equal(t, "sip", num.Mode, "business-initiated calls need a SIP-mode number")
	assert.Contains(t, text, "Dial(PJSIP/+${EXTEN}@${WA_TRUNK},")
	handler, ok := contexts["wa-outbound-headers"]
	require.True(t, ok)
	assert.Contains(t, strings.Join(handler.get("exten"), "\n"), "PJSIP_HEADER(add,X-WA-Business-Number)=${WA_BUSINESS_NUMBER}")
}

func findNumber(nums []exampleNumber, e164 string) (exampleNumber, bool) {
	i := slices.IndexFunc(nums, func(n exampleNumber) bool { return n.Number == e164 })
	if i < 0 {
		return exampleNumber{}, false
	}
	return nums[i], true
}

// assertBalanced checks (), [] and {} nesting in one dialplan value.
func assertBalanced(t testing.TB, s, where string) {
	t.Helper()
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for _, r := range s {
		switch r {
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				t.Errorf("%s: unbalanced brackets in %q", where, s)
				return
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		t.Errorf("%s: unclosed brackets in %q", where, s)
	}
}

// ---- FreeSWITCH ----

// freeswitchGatewayParams are the gateway <param> names mod_sofia accepts (sofia.c, the
// gateway loop of parse_gateways, master of 2026-08).
var freeswitchGatewayParams = []string{"register", "scheme", "realm", "username", "extension-in-contact",
	"auth-username", "password", "caller-id-in-from", "extension", "contact-in-ping", "ping", "ping-max",
	"ping-min", "ping-user-agent", "ping-monitoring", "proxy", "context", "expire-seconds", "908-retry-seconds",
	"retry-seconds", "timeout-seconds", "from-user", "from-domain", "contact-host", "register-proxy",
	"outbound-proxy", "distinct-to", "destination-prefix", "rfc-5626", "reg-id", "contact-params",
	"register-transport", "gw-auth-acl"}

type fsInclude struct {
	Gateways   []fsGateway   `xml:"gateway"`
	Extensions []fsExtension `xml:"extension"`
}

type fsGateway struct {
	Name   string    `xml:"name,attr"`
	Params []fsParam `xml:"param"`
}

type fsParam struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type fsExtension struct {
	Name       string        `xml:"name,attr"`
	Conditions []fsCondition `xml:"condition"`
}

type fsCondition struct {
	Field      string     `xml:"field,attr"`
	Expression string     `xml:"expression,attr"`
	Actions    []fsAction `xml:"action"`
}

type fsAction struct {
	Application string `xml:"application,attr"`
	Data        string `xml:"data,attr"`
}

func parseFreeSWITCH(t testing.TB, rel string) fsInclude {
	t.Helper()
	f, err := os.Open(repoPath(t, rel))
	require.NoError(t, err)
	defer f.Close()
	dec := xml.NewDecoder(f)
	dec.Strict = true
	var root struct {
		XMLName xml.Name
		fsInclude
	}
	require.NoError(t, dec.Decode(&root), "%s is not well-formed XML", rel)
	require.Equal(t, "include", root.XMLName.Local, "%s: FreeSWITCH config fragments are <include>", rel)
	return root.fsInclude
}

// actions returns the data of every action of an application in an extension, in order.
func (e fsExtension) actions(app string) []string {
	var out []string
	for _, c := range e.Conditions {
		for _, a := range c.Actions {
			if a.Application == app {
				out = append(out, a.Data)
			}
		}
	}
	return out
}

// matches reports whether a condition on field accepts value. FreeSWITCH uses PCRE; the kit's
// expressions stay within what Go's regexp reads the same way.
func (e fsExtension) matches(t testing.TB, field, value string) bool {
	t.Helper()
	for _, c := range e.Conditions {
		if c.Field == field {
			return regexp.MustCompile(c.Expression).MatchString(value)
		}
	}
	return false
}

func TestFreeSWITCHKit(t *testing.T) {
	t.Parallel()
	gw := parseFreeSWITCH(t, "examples/freeswitch/sip_profiles/external/wabridge.xml")
	require.Len(t, gw.Gateways, 1)
	g := gw.Gateways[0]
	params := map[string]string{}
	for _, p := range g.Params {
		assert.Contains(t, freeswitchGatewayParams, p.Name, "gateway %s: unknown param", g.Name)
		params[p.Name] = p.Value
	}
	assert.Equal(t, "false", params["register"], "wabridge is a trunk peer, not a registrar")
	assert.Equal(t, "true", params["caller-id-in-from"])
	assert.Regexp(t, `^[0-9.]+:\d+$`, params["proxy"])

	headers := sipHeaderNames(t)

	// Inbound: one extension per configured number, only from wabridge's address, reading every
	// header through mod_sofia's sip_h_ variables.
	in := parseFreeSWITCH(t, "examples/freeswitch/dialplan/public/wabridge.xml")
	require.NotEmpty(t, in.Extensions)
	for _, num := range exampleNumbers(t) {
		ext := num.Extension
		i := slices.IndexFunc(in.Extensions, func(e fsExtension) bool { return e.matches(t, "destination_number", ext) })
		if !assert.GreaterOrEqual(t, i, 0, "public dialplan has no extension for %s (%s)", num.Number, ext) {
			continue
		}
		e := in.Extensions[i]
		assert.True(t, e.matches(t, "network_addr", strings.Split(params["proxy"], ":")[0]),
			"extension %s must accept calls from the gateway's address", e.Name)
		assert.False(t, e.matches(t, "network_addr", "192.0.2.99"), "extension %s must refuse other addresses", e.Name)
		sets := strings.Join(append(e.actions("set"), e.actions("export")...), "\n")
		for _, h := range headers {
			assert.Contains(t, sets, "${sip_h_"+h+"}", "extension %s does not read %s", e.Name, h)
		}
		assert.NotEmpty(t, append(e.actions("transfer"), e.actions("bridge")...), "extension %s goes nowhere", e.Name)
	}

	// Outbound: E.164 with or without '+', not internal extensions; through the gateway, Opus
	// first, the business number as a header.
	out := parseFreeSWITCH(t, "examples/freeswitch/dialplan/default/wabridge.xml")
	require.Len(t, out.Extensions, 1)
	e := out.Extensions[0]
	assert.True(t, e.matches(t, "destination_number", "+15557654321"))
	assert.True(t, e.matches(t, "destination_number", "15557654321"))
	assert.False(t, e.matches(t, "destination_number", "1000"), "internal extensions must not go to WhatsApp")
	sets := e.actions("set")
	var biz string
	for _, s := range sets {
		if v, ok := strings.CutPrefix(s, "sip_h_X-WA-Business-Number="); ok {
			biz = v
		}
	}
	num, ok := findNumber(exampleNumbers(t), biz)
	require.True(t, ok, "sip_h_X-WA-Business-Number %q is not a number in examples/wabridge.yaml", biz)
	assert.Equal(t, "sip", num.Mode)
	assert.Contains(t, sets, "absolute_codec_string=OPUS,PCMU,PCMA")
	assert.Equal(t, []string{"sofia/gateway/" + g.Name + "/+$1"}, e.actions("bridge"))
}
