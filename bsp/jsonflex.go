package bsp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The types below parse the spellings providers actually use for one field. Meta's samples
// write timestamps as strings and durations as numbers, Meta documents SIP ports as "String" but
// samples a number, and BSP copies drift further (whatsapp-calling.md §1.2, §3, §6a). Parsing
// both spellings is cheaper than a failed call.

// flexInt is a JSON number or a string holding one. An empty string or null is 0.
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		s = strings.TrimSpace(s)
		if s == "" {
			*n = 0
			return nil
		}
		b = []byte(s)
	}
	// Numbers may come as floats ("59.0") from some gateways; truncation is fine for seconds.
	if v, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		*n = flexInt(v)
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("not a number: %.40q", b)
	}
	*n = flexInt(v)
	return nil
}

// flexString is a JSON string, or a number/bool written without quotes (ids and numbers
// produced by loosely typed gateways). null is "".
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
		return nil
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9') || b[0] == 't' || b[0] == 'f'):
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(string(b))
		return nil
	}
	return fmt.Errorf("expected a string, got %.20q", b)
}

// unixTime is Unix seconds as a number or a string. Zero and absent are the zero time.
type unixTime time.Time

func (t *unixTime) UnmarshalJSON(b []byte) error {
	var n flexInt
	if err := n.UnmarshalJSON(b); err != nil {
		return err
	}
	if n <= 0 {
		*t = unixTime{}
		return nil
	}
	*t = unixTime(time.Unix(int64(n), 0).UTC())
	return nil
}

func (t unixTime) Time() time.Time { return time.Time(t) }

// stringList is a string or an array of strings. Meta's terminate sample writes the status enum
// as ["Failed","Completed"] (whatsapp-calling.md §3.6).
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var v []flexString
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		out := make([]string, len(v))
		for i := range v {
			out[i] = string(v[i])
		}
		*l = out
		return nil
	}
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	*l = []string{string(s)}
	return nil
}
