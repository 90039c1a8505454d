package config_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/wabridge/wabridge/config"
)

func TestSIPPasswordSources(t *testing.T) {
	const envName = "WABRIDGE_TEST_SIP_PASSWORD"
	tests := []struct {
		name    string
		sip     func(t *testing.T) config.NumberSIP
		want    string
		wantErr string
	}{
		{
			name: "inline",
			sip:  func(*testing.T) config.NumberSIP { return config.NumberSIP{PasswordInline: "inline-pw"} },
			want: "inline-pw",
		},
		{
			name: "file, trimmed",
			sip: func(t *testing.T) config.NumberSIP {
				return config.NumberSIP{PasswordFile: writeFile(t, "pw", "  file-pw\n")}
			},
			want: "file-pw",
		},
		{
			name: "env",
			sip: func(t *testing.T) config.NumberSIP {
				t.Setenv(envName, "env-pw")
				return config.NumberSIP{PasswordEnv: envName}
			},
			want: "env-pw",
		},
		{
			name:    "none",
			sip:     func(*testing.T) config.NumberSIP { return config.NumberSIP{} },
			wantErr: "number +15551230001: sip.password: set exactly one of password, password_file, password_env",
		},
		{
			name: "two",
			sip: func(*testing.T) config.NumberSIP {
				return config.NumberSIP{PasswordInline: "inline-pw", PasswordEnv: envName}
			},
			wantErr: "number +15551230001: sip.password: set exactly one",
		},
		{
			name:    "missing file",
			sip:     func(*testing.T) config.NumberSIP { return config.NumberSIP{PasswordFile: "/nonexistent/pw"} },
			wantErr: "number +15551230001: sip.password_file: open /nonexistent/pw: no such file or directory",
		},
		{
			name: "empty file",
			sip: func(t *testing.T) config.NumberSIP {
				return config.NumberSIP{PasswordFile: writeFile(t, "pw", "\n")}
			},
			wantErr: "sip.password_file: ",
		},
		{
			name:    "unset env",
			sip:     func(*testing.T) config.NumberSIP { return config.NumberSIP{PasswordEnv: "WABRIDGE_TEST_NEVER_SET"} },
			wantErr: "number +15551230001: sip.password_env: environment variable WABRIDGE_TEST_NEVER_SET is not set",
		},
		{
			name: "empty env",
			sip: func(t *testing.T) config.NumberSIP {
				t.Setenv(envName, "")
				return config.NumberSIP{PasswordEnv: envName}
			},
			wantErr: "sip.password_env: environment variable " + envName + " is empty",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := config.Number{Number: "+15551230001", SIP: tt.sip(t)}
			got, err := n.SIPPassword()
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestPBXRegisterPassword(t *testing.T) {
	r := config.PBXRegister{PasswordFile: writeFile(t, "pw", "reg-pw\n")}
	got, err := r.Password()
	require.NoError(t, err)
	assert.Equal(t, "reg-pw", got)

	t.Setenv("WABRIDGE_TEST_REG_PASSWORD", "reg-env-pw")
	r = config.PBXRegister{PasswordEnv: "WABRIDGE_TEST_REG_PASSWORD"}
	got, err = r.Password()
	require.NoError(t, err)
	assert.Equal(t, "reg-env-pw", got)

	r = config.PBXRegister{}
	_, err = r.Password()
	assert.EqualError(t, err, "pbx.register.password: set exactly one of password, password_file, password_env")
}

// TestPasswordFromFileAndEnvViaLoad covers the path the daemon uses: the config names the
// sources, Load validates them, and the bridge reads them through the methods.
func TestPasswordFromFileAndEnvViaLoad(t *testing.T) {
	pwFile := writeFile(t, "pw", "from-file\n")
	t.Setenv("WABRIDGE_TEST_SIP_PASSWORD_2", "from-env")
	doc := edit(t, withCert(t, baseYAML), "password: "+inlineSecret, "password_file: "+pwFile)
	doc = edit(t, doc, "    mode: api\n", "    sip: {password_env: WABRIDGE_TEST_SIP_PASSWORD_2, srtp: dtls}\n")
	cfg, err := config.Load(writeFile(t, "wabridge.yaml", doc))
	require.NoError(t, err)

	pw, err := cfg.Numbers[0].SIPPassword()
	require.NoError(t, err)
	assert.Equal(t, "from-file", pw)
	pw, err = cfg.Numbers[1].SIPPassword()
	require.NoError(t, err)
	assert.Equal(t, "from-env", pw)
}

func TestSecretsAreRedacted(t *testing.T) {
	const regSecret = "registration-secret-value"
	doc := edit(t, withCert(t, baseYAML), "  address: 127.0.0.1:5070",
		"  address: 127.0.0.1:5070\n  register: {enabled: true, username: wabridge, password: "+regSecret+"}")
	cfg, err := config.Parse([]byte(doc))
	require.NoError(t, err)
	require.Equal(t, config.Secret(inlineSecret), cfg.Numbers[0].SIP.PasswordInline, "the value is kept, only hidden")

	jsonOut, err := json.Marshal(cfg)
	require.NoError(t, err)
	yamlOut, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	var logOut jsonBuffer
	log := logrus.New()
	log.SetOutput(&logOut)
	log.SetFormatter(&logrus.JSONFormatter{})
	log.WithField("number", cfg.Numbers[0]).WithField("sip", cfg.Numbers[0].SIP.PasswordInline).Info("call")

	renderings := map[string]string{
		"%v":            fmt.Sprintf("%v", cfg),
		"%+v":           fmt.Sprintf("%+v", cfg),
		"%#v":           fmt.Sprintf("%#v", cfg),
		"%v of *Number": fmt.Sprintf("%v", &cfg.Numbers[0]),
		"%+v of Number": fmt.Sprintf("%+v", cfg.Numbers[0]),
		"%q of Secret":  fmt.Sprintf("%q", cfg.Numbers[0].SIP.PasswordInline),
		"%x of Secret":  fmt.Sprintf("%x", cfg.Numbers[0].SIP.PasswordInline),
		"%v of PBX":     fmt.Sprintf("%v", cfg.PBX),
		"String()":      cfg.Numbers[0].SIP.PasswordInline.String(),
		"json":          string(jsonOut),
		"yaml":          string(yamlOut),
		"logrus json":   logOut.String(),
	}
	for name, out := range renderings {
		t.Run(name, func(t *testing.T) {
			assert.NotContains(t, out, inlineSecret)
			assert.NotContains(t, out, regSecret)
		})
	}
	assert.Contains(t, renderings["%+v"], "PasswordInline:[redacted]")
	assert.Contains(t, renderings["yaml"], "password: '[redacted]'")
	assert.Equal(t, "", config.Secret("").String(), "an unset secret shows as unset")
}

// jsonBuffer is a minimal io.Writer collecting log output.
type jsonBuffer struct{ b []byte }

func (j *jsonBuffer) Write(p []byte) (int, error) { j.b = append(j.b, p...); return len(p), nil }
func (j *jsonBuffer) String() string              { return string(j.b) }
