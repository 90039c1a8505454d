package peertest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
)

// WAV holds 16-bit PCM audio mixed down to mono, scaled to [-1, 1).
type WAV struct {
	Rate     int       // samples per second
	Channels int       // channels in the file (Samples is their average)
	Samples  []float64 // mono
}

// Duration is the length of the audio in seconds.
func (w *WAV) Duration() float64 { return float64(len(w.Samples)) / float64(w.Rate) }

// ReadWAV reads a RIFF/WAVE file of 16-bit PCM, any rate and channel count, and mixes it to
// mono. A data chunk whose size is 0 or runs past the end of the file is read to the end: a
// recorder that was killed (baresip's sndfile filter updates the header only when the call
// closes) leaves such a header behind.
func ReadWAV(path string) (*WAV, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, fmt.Errorf("wav %s: not a RIFF/WAVE file", path)
	}
	var (
		haveFmt         bool
		channels, rate  int
		bits, blockSize int
	)
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		body := b[off+8:]
		switch id {
		case "fmt ":
			if size < 16 || len(body) < 16 {
				return nil, fmt.Errorf("wav %s: short fmt chunk", path)
			}
			tag := binary.LittleEndian.Uint16(body[0:])
			channels = int(binary.LittleEndian.Uint16(body[2:]))
			rate = int(binary.LittleEndian.Uint32(body[4:]))
			blockSize = int(binary.LittleEndian.Uint16(body[12:]))
			bits = int(binary.LittleEndian.Uint16(body[14:]))
			if tag == 0xfffe && size >= 40 && len(body) >= 26 { // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the tag
				tag = binary.LittleEndian.Uint16(body[24:])
			}
			if tag != 1 || bits != 16 || channels < 1 || rate < 1 || blockSize != 2*channels {
				return nil, fmt.Errorf("wav %s: format tag %d, %d bits, %d channels: only 16-bit PCM is supported", path, tag, bits, channels)
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, fmt.Errorf("wav %s: data chunk before fmt chunk", path)
			}
			if size == 0 || size > len(body) {
				size = len(body)
			}
			frames := size / blockSize
			w := &WAV{Rate: rate, Channels: channels, Samples: make([]float64, frames)}
			for i := range frames {
				var sum float64
				for c := range channels {
					sum += float64(int16(binary.LittleEndian.Uint16(body[i*blockSize+2*c:])))
				}
				w.Samples[i] = sum / float64(channels) / 32768
			}
			return w, nil
		}
		off += 8 + size + size&1 // chunks are padded to even sizes
	}
	return nil, fmt.Errorf("wav %s: no data chunk", path)
}

// WriteToneWAV writes a 16-bit PCM sine of freq Hz at half of full scale: a source for
// baresip's aufile (which wants its ausrc_srate and ausrc_channels, 48000 Hz stereo in our
// configs) and test input for DominantFrequency.
func WriteToneWAV(path string, freq float64, rate, channels int, seconds float64) error {
	frames := int(seconds * float64(rate))
	data := make([]byte, frames*channels*2)
	for i := range frames {
		v := int16(0.5 * 32767 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
		for c := range channels {
			binary.LittleEndian.PutUint16(data[(i*channels+c)*2:], uint16(v))
		}
	}
	hdr := make([]byte, 44)
	copy(hdr[0:], "RIFF")
	binary.LittleEndian.PutUint32(hdr[4:], uint32(36+len(data)))
	copy(hdr[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(hdr[16:], 16)
	binary.LittleEndian.PutUint16(hdr[20:], 1) // PCM
	binary.LittleEndian.PutUint16(hdr[22:], uint16(channels))
	binary.LittleEndian.PutUint32(hdr[24:], uint32(rate))
	binary.LittleEndian.PutUint32(hdr[28:], uint32(rate*channels*2))
	binary.LittleEndian.PutUint16(hdr[32:], uint16(channels*2))
	binary.LittleEndian.PutUint16(hdr[34:], 16)
	copy(hdr[36:], "data")
	binary.LittleEndian.PutUint32(hdr[40:], uint32(len(data)))
	return os.WriteFile(path, append(hdr, data...), 0o644)
}

// ErrSilent is returned by DominantFrequency for a recording without audible signal.
var ErrSilent = errors.New("no audible signal")

// Frequency search limits: the tones tests send lie in the telephone band.
const (
	minToneHz = 50.0
	maxToneHz = 4000.0
)

// DominantFrequency estimates the frequency of the strongest tone in a 16-bit PCM WAV file, to
// within about 1 Hz for a steady tone, so tests can assert "≈440 Hz arrived" after a trip
// through codecs and SRTP. It measures the audible part of the recording (leading and trailing
// silence, as jitter buffers and call set-up leave, is ignored): a Goertzel scan at 10 Hz steps
// over short windows finds the peak (sox's zero-crossing "Rough frequency" is only right on 8 kHz
// mono), then a scan at 0.25 Hz steps over up to one second refines it.
func DominantFrequency(wavPath string) (float64, error) {
	w, err := ReadWAV(wavPath)
	if err != nil {
		return 0, err
	}
	return w.DominantFrequency()
}

// DominantFrequency is the package function on decoded audio.
func (w *WAV) DominantFrequency() (float64, error) {
	start, end := w.audible()
	if end-start < w.Rate/10 {
		return 0, fmt.Errorf("dominant frequency: %w (%.2f s of audio)", ErrSilent, w.Duration())
	}
	w = w.decimated(start, end)
	start, end = 0, len(w.Samples)
	hi := min(maxToneHz, float64(w.Rate)/2-10)

	// Coarse: 100 ms windows (main lobe about ±20 Hz with the Hann window, so a 10 Hz grid cannot
	// step over a peak), summed over up to 8 windows spread across the audible part.
	win := w.Rate / 10
	var windows [][]float64
	for k, n := 0, min(8, (end-start)/win); k < n; k++ {
		s := start + k*((end-start-win)/max(n-1, 1))
		windows = append(windows, hann(w.Samples[s:s+win]))
	}
	best, bestPower := 0.0, -1.0
	for f := minToneHz; f <= hi; f += 10 {
		var p float64
		for _, x := range windows {
			p += goertzel(x, f, w.Rate)
		}
		if p > bestPower {
			best, bestPower = f, p
		}
	}

	// Fine: one window of up to 1 s from the middle of the audible part.
	n := min(end-start, w.Rate)
	mid := start + (end-start-n)/2
	seg := hann(w.Samples[mid : mid+n])
	fine, finePower := best, -1.0
	for f := max(minToneHz, best-15); f <= min(hi, best+15); f += 0.25 {
		if p := goertzel(seg, f, w.Rate); p > finePower {
			fine, finePower = f, p
		}
	}
	return fine, nil
}

// decimated returns samples start to end at a rate of at least 10 kHz, averaging groups of
// samples: enough for tones up to maxToneHz and it keeps the scans fast (the race detector
// slows every sample read down).
func (w *WAV) decimated(start, end int) *WAV {
	k := max(w.Rate/10000, 1)
	out := &WAV{Rate: w.Rate / k, Channels: w.Channels, Samples: make([]float64, (end-start)/k)}
	for i := range out.Samples {
		var sum float64
		for _, v := range w.Samples[start+i*k : start+(i+1)*k] {
			sum += v
		}
		out.Samples[i] = sum / float64(k)
	}
	return out
}

// audible returns the sample range between the first and last 20 ms block whose RMS is at
// least a tenth of the loudest block's, or an empty range for silence.
func (w *WAV) audible() (start, end int) {
	block := max(w.Rate/50, 1)
	var rms []float64
	peak := 0.0
	for i := 0; i+block <= len(w.Samples); i += block {
		var sum float64
		for _, v := range w.Samples[i : i+block] {
			sum += v * v
		}
		r := math.Sqrt(sum / float64(block))
		rms = append(rms, r)
		peak = max(peak, r)
	}
	if peak < 1e-3 { // about -60 dBFS: digital silence or comfort noise
		return 0, 0
	}
	first, last := -1, -1
	for i, r := range rms {
		if r >= peak/10 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return first * block, (last + 1) * block
}

// hann returns a copy of x multiplied by a Hann window, which keeps a strong tone's side lobes
// from masking the peak.
func hann(x []float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * (0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(len(x)-1)))
	}
	return out
}

// goertzel returns the power of frequency f in x by the Goertzel recurrence.
func goertzel(x []float64, f float64, rate int) float64 {
	coeff := 2 * math.Cos(2*math.Pi*f/float64(rate))
	var s1, s2 float64
	for _, v := range x {
		s1, s2 = v+coeff*s1-s2, s1
	}
	return s1*s1 + s2*s2 - coeff*s1*s2
}
