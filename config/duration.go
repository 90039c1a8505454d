package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Duration is a time.Duration written in the config as a Go duration string ("30s", "5m").
// A bare number is rejected rather than read as nanoseconds: "inactivity_timeout: 30" is far
// more likely to mean seconds than 30 ns, and guessing would be worse than asking.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d like time.Duration ("30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as a duration string, so an encoded config reads like the input.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration string such as "30s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write one with a unit, such as \"30s\"", s)
	}
	return Duration(v), nil
}

// durationHook lets mapstructure decode Duration fields from strings and turns bare numbers into
// a clear error instead of a silent nanosecond count.
func durationHook(_ reflect.Type, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[Duration]() {
		return data, nil
	}
	switch v := data.(type) {
	case nil, Duration:
		return data, nil
	case time.Duration:
		return Duration(v), nil
	case string:
		return parseDuration(v)
	default:
		return nil, fmt.Errorf("%v has no unit; write a duration such as \"30s\"", v)
	}
}
