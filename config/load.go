package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	env "github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"
)

// Load reads the YAML file at path, applies WABRIDGE_* environment overrides (see EnvPrefix),
// fills defaults and validates. On failure the error is an errors.Join of one error per problem,
// each starting with the key at fault, so a caller can list them all (errors.Join's Unwrap
// []error) instead of fixing one per run.
//
// Validation reads the files and variables the config points at (certificate, key, CA,
// password_file, password_env), so run it as the service user with the service's environment.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return load(data, os.Environ())
}

// Parse is Load for a config held in memory, such as the one the demo embeds. It applies no
// environment overrides, so an embedded config behaves the same on every machine.
func Parse(data []byte) (*Config, error) {
	return load(data, nil)
}

func load(data []byte, environ []string) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(rawBytes(data), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	// koanf and mapstructure ignore keys that match no field, so a typo such as "pasword" would
	// silently leave the password unset; check the file's keys against the struct first.
	problems := unknownKeys(k.Raw(), reflect.TypeFor[Config](), "")

	overrides, envProblems := envOverrides(environ)
	problems = append(problems, envProblems...)
	if len(overrides) > 0 {
		err := k.Load(env.Provider(".", env.Opt{
			EnvironFunc:   func() []string { return overrides },
			TransformFunc: func(name, value string) (string, any) { return envKey(name), value },
		}), nil)
		if err != nil {
			return nil, fmt.Errorf("environment overrides: %w", err)
		}
	}

	// Decoding onto the defaults (rather than filling zero values afterwards) keeps an explicit
	// "" meaningful: `udp: ""` disables the UDP listener instead of reverting to 0.0.0.0:5060.
	cfg := defaults()
	err := k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(listHook, durationHook),
			// Weak typing lets environment strings fill ints and bools, and an unquoted
			// phone_number_id (a YAML int) fill a string.
			WeaklyTypedInput: true,
			// Exact key match, consistent with unknownKeys: "Password" is a typo, not a match.
			MatchName: func(mapKey, fieldName string) bool { return mapKey == fieldName },
		},
	})
	problems = append(problems, decodeProblems(err)...)

	cfg.applyDerivedDefaults()
	problems = append(problems, cfg.validate()...)
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return cfg, nil
}

// defaults returns a Config holding every static default. Keys whose default depends on other
// keys are filled by applyDerivedDefaults after decoding.
func defaults() *Config {
	return &Config{
		Log: Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		SIP: SIP{
			PBXListen:      PBXListen{UDP: DefaultPBXListen, TCP: DefaultPBXListen},
			WhatsAppListen: WhatsAppListen{TLS: DefaultWhatsAppListenTLS},
		},
		Media: Media{
			BindIP:            DefaultBindIP,
			RTPPortMin:        DefaultRTPPortMin,
			RTPPortMax:        DefaultRTPPortMax,
			InactivityTimeout: DefaultInactivityTimeout,
			ICETimeout:        DefaultICETimeout,
		},
		Limits:  Limits{DrainTimeout: DefaultDrainTimeout},
		Webhook: Webhook{Path: DefaultWebhookPath},
		PBX: PBX{
			Transport: DefaultPBXTransport,
			Register:  PBXRegister{Expires: DefaultRegisterExpires},
			OpusPT:    DefaultOpusPT,
			DTMFPT:    DefaultDTMFPT,
		},
	}
}

// applyDerivedDefaults fills keys whose default is another key's value, and per-number defaults
// (list elements cannot be pre-filled before decoding). For these "" never means "disabled".
func (c *Config) applyDerivedDefaults() {
	if c.Media.PublicIP == "" && !isUnspecifiedIP(c.Media.BindIP) {
		c.Media.PublicIP = c.Media.BindIP
	}
	if c.SIP.Hostname == "" {
		c.SIP.Hostname = c.Media.PublicIP
	}
	if c.PBX.Register.Registrar == "" {
		c.PBX.Register.Registrar = c.PBX.Address
	}
	for i := range c.Numbers {
		n := &c.Numbers[i]
		if n.Mode == "" {
			n.Mode = DefaultMode
		}
		if n.SIP.Hostname == "" {
			n.SIP.Hostname = c.SIP.Hostname
		}
		if n.SIP.Edge.Host == "" {
			n.SIP.Edge.Host = DefaultEdgeHost
		}
		// Meta spells codecs in upper case (calling.audio.additional_codecs); accept any case.
		for j, codec := range n.SIP.AdditionalCodecs {
			n.SIP.AdditionalCodecs[j] = strings.ToUpper(codec)
		}
	}
}

// listHook rejects a mapping where a list belongs. Weak typing would otherwise turn
// "numbers: {number: ...}" (a missing '- ') into a one-element list and hide the mistake; a
// single scalar still becomes a one-element list ("additional_codecs: PCMA").
func listHook(from, to reflect.Type, data any) (any, error) {
	if to.Kind() == reflect.Slice && from.Kind() == reflect.Map {
		return nil, errors.New("must be a list (start each entry with '- ')")
	}
	return data, nil
}

// rawBytes is a koanf.Provider for a config already in memory.
type rawBytes []byte

func (b rawBytes) ReadBytes() ([]byte, error) { return b, nil }

func (b rawBytes) Read() (map[string]any, error) {
	return nil, errors.New("rawBytes provider needs a parser")
}

// envOverrides picks the WABRIDGE_* variables that are overrides (they contain "__") and
// reports those that name no config key: a misspelt override is as silent as a misspelt YAML key.
func envOverrides(environ []string) (overrides []string, problems []error) {
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || !strings.Contains(name, "__") {
			continue
		}
		key := envKey(name)
		if err := checkEnvKey(reflect.TypeFor[Config](), strings.Split(key, ".")); err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", name, err))
			continue
		}
		overrides = append(overrides, kv)
	}
	return overrides, problems
}

// envKey maps WABRIDGE_SIP__PBX_LISTEN__UDP to sip.pbx_listen.udp.
func envKey(name string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, EnvPrefix)), "__", ".")
}

// checkEnvKey reports whether path names a settable leaf of t.
func checkEnvKey(t reflect.Type, path []string) error {
	for i, part := range path {
		full := strings.Join(path[:i+1], ".")
		f, ok := fieldByKey(t, part)
		if !ok {
			return fmt.Errorf("%s is not a config key%s", full, suggest(t, part, strings.Join(path[:i], ".")))
		}
		t = f.Type
		switch {
		case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
			return fmt.Errorf("%s cannot be overridden from the environment; use password_env for per-number secrets", full)
		case t.Kind() == reflect.Struct && i == len(path)-1:
			return fmt.Errorf("%s is a section; name one of its keys", full)
		case t.Kind() != reflect.Struct && i < len(path)-1:
			return fmt.Errorf("%s is not a section", full)
		}
	}
	return nil
}

// unknownKeys walks a parsed YAML document against the struct type t and reports every key that
// matches no field, with its full path ("numbers[0].sip.pasword") and a suggestion when a field
// is a likely intended spelling.
func unknownKeys(raw map[string]any, t reflect.Type, prefix string) []error {
	var problems []error
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		path := joinKey(prefix, key)
		f, ok := fieldByKey(t, key)
		if !ok {
			problems = append(problems, fmt.Errorf("%s: unknown key%s", path, suggest(t, key, prefix)))
			continue
		}
		// Values of the wrong shape are left to the decoder, which reports them with the key.
		switch ft := f.Type; {
		case ft.Kind() == reflect.Struct:
			if m, ok := raw[key].(map[string]any); ok {
				problems = append(problems, unknownKeys(m, ft, path)...)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			items, _ := raw[key].([]any)
			for i, item := range items {
				if m, ok := item.(map[string]any); ok {
					problems = append(problems, unknownKeys(m, ft.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
				}
			}
		}
	}
	return problems
}

// fieldByKey finds the field of struct type t whose koanf tag is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("koanf"), ","); tag == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// suggest returns ` (did you mean "x"?)` when a key of t is within two edits of key: most
// unknown keys are typos of a real one.
func suggest(t reflect.Type, key, prefix string) string {
	best, bestDist := "", 3
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("koanf"), ",")
		if d := editDistance(strings.ToLower(key), tag); d < bestDist {
			best, bestDist = tag, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", joinKey(prefix, best))
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func joinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// decodeProblems flattens mapstructure's nested joined errors into one error per key, written
// "key: problem" like the validation errors.
func decodeProblems(err error) []error {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, decodeProblems(e)...)
		}
		return out
	}
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		return []error{fmt.Errorf("%s: %w", de.Name(), de.Unwrap())}
	}
	return []error{fmt.Errorf("decode: %w", err)}
}
