package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Secret is a password held in the config. It prints as "[redacted]" under every fmt verb
// (including %#v, and inside structs formatted with %v/%+v) and encodes as "[redacted]" in JSON
// and YAML, so logging a Config, a Number or a whole error context never leaks it. An empty
// Secret prints as "" because "not set" is useful when debugging and reveals nothing.
//
// Read the real value through Number.SIPPassword or PBXRegister.Password.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]", or "" when the secret is empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Format implements fmt.Formatter; fmt consults it before String and GoString, for every verb.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.String())
		return
	}
	fmt.Fprint(f, s.String())
}

// MarshalText masks the secret for encoding/json, YAML and other text encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// secretSourceError is a problem with one of a password's sources. Key is the config key at
// fault relative to the block holding the password ("password_file"), so callers can report it
// under the full path. Neither field ever contains the secret.
type secretSourceError struct {
	Key string
	Err error
}

func (e *secretSourceError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *secretSourceError) Unwrap() error { return e.Err }

// resolveSecret reads a password from the one source that is set.
func resolveSecret(inline Secret, file, env string) (string, error) {
	return resolveNamedSecret("password", inline, file, env)
}

// resolveNamedSecret reads a secret whose keys are name, name_file and name_env.
func resolveNamedSecret(name string, inline Secret, file, env string) (string, error) {
	set := 0
	for _, v := range []string{string(inline), file, env} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		// With two sources set we could not tell which one the operator rotated.
		return "", &secretSourceError{name, fmt.Errorf("set exactly one of %s, %s_file, %s_env", name, name, name)}
	}
	switch {
	case inline != "":
		return string(inline), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", &secretSourceError{name + "_file", err}
		}
		// Trimmed because `echo secret > file` and editors add a newline that is not part of
		// the password.
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", &secretSourceError{name + "_file", fmt.Errorf("%s is empty", file)}
		}
		return s, nil
	default:
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", &secretSourceError{name + "_env", fmt.Errorf("environment variable %s is not set", env)}
		}
		if v == "" {
			return "", &secretSourceError{name + "_env", fmt.Errorf("environment variable %s is empty", env)}
		}
		return v, nil
	}
}

// secretError reports a resolveSecret error under the full key, e.g.
// "pbx.register.password_env: environment variable X is not set".
func secretError(prefix string, err error) error {
	var se *secretSourceError
	if errors.As(err, &se) {
		return fmt.Errorf("%s.%s: %w", prefix, se.Key, se.Err)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}
