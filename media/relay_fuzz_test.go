package media

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// FuzzRelayPacket feeds arbitrary datagrams to every per-packet handler. The relay must never
// panic, whatever a peer (or anyone who can reach our ports) sends.
//
//	go test -run xxx -fuzz FuzzRelayPacket -fuzztime 60s ./media/
//
// mode bit 0-1: 0 the WhatsApp RTP handler with the bytes as they are (mostly auth failures),
// 1 the PBX RTP handler, 2 the WhatsApp handler with the bytes encrypted first as if they were
// a plaintext RTP packet (so fuzzing reaches past authentication), 3 the RTCP socket handlers.
// mode bit 2: SRTP (GCM) on the PBX leg too, and AES-CM instead of GCM toward WhatsApp.
func FuzzRelayPacket(f *testing.F) {
	valid, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pbxOpusPT, SequenceNumber: 1, SSRC: 1}, Payload: []byte{1, 2, 3}}).Marshal()
	ext := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: waOpusPT, SequenceNumber: 2, SSRC: 1, CSRC: []uint32{7}}, Payload: []byte{9}}
	_ = ext.SetExtension(1, []byte{0xaa})
	withExt, _ := ext.Marshal()
	rtcpRR := []byte{0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for mode := range uint8(8) {
		f.Add(mode, valid)
		f.Add(mode, withExt)
		f.Add(mode, rtcpRR)
		f.Add(mode, []byte{0x80})
		f.Add(mode, []byte{0xbf, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff})
	}
	from := netip.MustParseAddrPort("192.0.2.1:3480")
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		waSuite, pbxSuite := SuiteAEADAES128GCM, ""
		if mode&4 != 0 {
			waSuite, pbxSuite = SuiteAES128SHA1_80, SuiteAEADAES128GCM
		}
		r, wa, _ := offlineRelay(t, waSuite, pbxSuite)
		now := time.Now()
		// Handlers get a buffer with spare capacity, like the reader's, and may write into it.
		buf := make([]byte, maxDatagram+1)
		in := buf[:copy(buf, data)]
		switch mode & 3 {
		case 0:
			r.handleWhatsAppRTP(in, from, now)
		case 1:
			r.handlePBXRTP(in, from, now)
		case 2:
			if enc, err := wa.enc.EncryptRTP(nil, data, nil); err == nil && len(enc) <= len(buf) {
				in = buf[:copy(buf, enc)]
			}
			r.handleWhatsAppRTP(in, from, now)
			// And the same bytes again: a replay.
			r.handleWhatsAppRTP(buf[:copy(buf, in)], from, now)
		case 3:
			r.wa.receiveRTCPSocket(in, from, now)
			r.pbx.receiveRTCPSocket(buf[:copy(buf, data)], from, now)
		}
		st := r.Stats()
		if st.WhatsApp.PacketsIn+st.PBX.PacketsIn == 0 {
			t.Fatal("handler did not count the packet")
		}
	})
}
