package media

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSelectCodec(t *testing.T) {
	opus := Codec{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2}
	pcma := Codec{PT: 8, Name: "PCMA", ClockRate: 8000}
	pcmu := Codec{PT: 0, Name: "PCMU", ClockRate: 8000}
	pcmu16 := Codec{PT: 97, Name: "PCMU", ClockRate: 16000}
	dtmf := Codec{PT: 101, Name: "telephone-event", ClockRate: 8000}
	tests := []struct {
		name   string
		remote []Codec
		prefer []string
		want   Codec
		ok     bool
	}{
		{"our order wins over theirs", []Codec{pcmu, pcma, opus}, []string{"opus", "PCMA", "PCMU"}, opus, true},
		{"first supported", []Codec{pcmu, dtmf}, []string{"opus", "PCMA", "PCMU"}, pcmu, true},
		{"case-insensitive", []Codec{{PT: 111, Name: "OPUS", ClockRate: 48000}}, []string{"opus"},
			Codec{PT: 111, Name: "OPUS", ClockRate: 48000}, true},
		{"name/clock", []Codec{pcmu16, pcmu}, []string{"PCMU/8000"}, pcmu, true},
		{"name only takes the remote's first", []Codec{pcmu16, pcmu}, []string{"pcmu"}, pcmu16, true},
		{"bad clock in preference matches nothing", []Codec{pcmu}, []string{"PCMU/x", "PCMU"}, pcmu, true},
		{"unnamed dynamic type never matches", []Codec{{PT: 96}}, []string{""}, Codec{}, false},
		{"none", []Codec{dtmf, {PT: 18, Name: "G729", ClockRate: 8000}}, []string{"opus", "PCMA"}, Codec{}, false},
		{"empty remote", nil, []string{"opus"}, Codec{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := SelectCodec(tt.remote, tt.prefer)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestStaticCodec(t *testing.T) {
	tests := []struct {
		pt   uint8
		want Codec
		ok   bool
	}{
		{0, Codec{PT: 0, Name: CodecPCMU, ClockRate: 8000}, true},
		{8, Codec{PT: 8, Name: CodecPCMA, ClockRate: 8000}, true},
		{9, Codec{PT: 9, Name: CodecG722, ClockRate: 8000}, true},
		{10, Codec{PT: 10, Name: "L16", ClockRate: 44100, Channels: 2}, true},
		{18, Codec{PT: 18, Name: "G729", ClockRate: 8000}, true},
		{1, Codec{}, false},  // reserved
		{19, Codec{}, false}, // unassigned
		{34, Codec{}, false}, // H263: video, not audio
		{96, Codec{}, false}, // dynamic
	}
	for _, tt := range tests {
		got, ok := staticCodec(tt.pt)
		assert.Equal(t, tt.ok, ok, "PT %d", tt.pt)
		assert.Equal(t, tt.want, got, "PT %d", tt.pt)
	}
}
