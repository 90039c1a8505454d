package peertest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"
)

// RTPPacket is one RTP packet (RFC 3550 §5.1) without CSRCs or header extensions, which is all
// the test streams need.
type RTPPacket struct {
	PT      uint8
	Seq     uint16
	TS      uint32
	SSRC    uint32
	Marker  bool
	Payload []byte
}

// Marshal returns the packet's wire form: a 12-byte RTP header and the payload.
func (p RTPPacket) Marshal() []byte {
	b := make([]byte, 12+len(p.Payload))
	b[0] = 0x80 // version 2, no padding, no extension, no CSRC
	b[1] = p.PT & 0x7f
	if p.Marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], p.Seq)
	binary.BigEndian.PutUint32(b[4:], p.TS)
	binary.BigEndian.PutUint32(b[8:], p.SSRC)
	copy(b[12:], p.Payload)
	return b
}

// ParseRTP parses an RTP packet, skipping CSRCs, a header extension and padding.
func ParseRTP(b []byte) (RTPPacket, error) {
	if len(b) < 12 {
		return RTPPacket{}, fmt.Errorf("rtp: %d bytes is shorter than the header", len(b))
	}
	if b[0]>>6 != 2 {
		return RTPPacket{}, fmt.Errorf("rtp: version %d", b[0]>>6)
	}
	p := RTPPacket{
		PT:     b[1] & 0x7f,
		Marker: b[1]&0x80 != 0,
		Seq:    binary.BigEndian.Uint16(b[2:]),
		TS:     binary.BigEndian.Uint32(b[4:]),
		SSRC:   binary.BigEndian.Uint32(b[8:]),
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 { // header extension: 4-byte header, then length in 32-bit words
		if len(b) < off+4 {
			return RTPPacket{}, errors.New("rtp: truncated header extension")
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 && end > 0 { // padding: the last byte counts the padding bytes
		end -= int(b[end-1])
	}
	if off > end {
		return RTPPacket{}, errors.New("rtp: header longer than packet")
	}
	p.Payload = append([]byte(nil), b[off:end]...)
	return p, nil
}

// pcap constants: the classic libpcap format (not pcapng), which is what sipp's
// play_pcap_audio reads, with Ethernet framing (a capture on Linux lo looks the same).
const (
	pcapMagic      = 0xa1b2c3d4 // microsecond timestamps
	pcapLinkEther  = 1          // LINKTYPE_ETHERNET
	pcapSnapLen    = 65535
	pcapPacketGap  = 20 * time.Millisecond // ptime of every codec our SDPs offer
	pcapSourcePort = 6000                  // sipp rewrites addresses and ports; only dst port matters
)

// pcapEpoch is the capture time of the first packet; fixed so files are reproducible.
var pcapEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// WritePCAP writes pkts as a classic libpcap file of Ethernet/IPv4/UDP/RTP frames, 20 ms apart,
// all sent to dst. sipp's play_pcap_audio replays such a file toward the SDP peer: it keeps each
// RTP header and payload and the spacing, and replaces the addresses and ports (it maps dst's port
// to the peer's media port, so every packet must share it). dst must be IPv4.
func WritePCAP(path string, pkts []RTPPacket, dst netip.AddrPort) (err error) {
	if !dst.Addr().Unmap().Is4() {
		return fmt.Errorf("pcap: destination %s is not IPv4", dst)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w := bufio.NewWriter(f)
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], pcapMagic)
	binary.LittleEndian.PutUint16(hdr[4:], 2) // version 2.4
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], pcapSnapLen)
	binary.LittleEndian.PutUint32(hdr[20:], pcapLinkEther)
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	src := netip.AddrPortFrom(dst.Addr().Unmap(), pcapSourcePort)
	for i, p := range pkts {
		frame := udpFrame(src, netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), uint16(i), p.Marshal())
		ts := pcapEpoch.Add(time.Duration(i) * pcapPacketGap)
		var rec [16]byte
		binary.LittleEndian.PutUint32(rec[0:], uint32(ts.Unix()))
		binary.LittleEndian.PutUint32(rec[4:], uint32(ts.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(frame)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(frame)))
		if _, err := w.Write(rec[:]); err != nil {
			return err
		}
		if _, err := w.Write(frame); err != nil {
			return err
		}
	}
	return w.Flush()
}

// udpFrame builds an Ethernet II + IPv4 + UDP frame with valid checksums, so tshark and sipp
// take it as a real capture.
func udpFrame(src, dst netip.AddrPort, id uint16, payload []byte) []byte {
	const ethLen, ipLen, udpLen = 14, 20, 8
	b := make([]byte, ethLen+ipLen+udpLen+len(payload))
	// Ethernet: zero MACs (as on lo), EtherType IPv4.
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[ethLen : ethLen+ipLen]
	ip[0] = 0x45 // IPv4, 5-word header
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen+udpLen+len(payload)))
	binary.BigEndian.PutUint16(ip[4:], id)
	ip[8] = 64 // TTL
	ip[9] = 17 // UDP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
	udp := b[ethLen+ipLen:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen+len(payload)))
	copy(udp[udpLen:], payload)
	// UDP checksum over the IPv4 pseudo-header (RFC 768).
	var pseudo uint32
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(s4[i:])) + uint32(binary.BigEndian.Uint16(d4[i:]))
	}
	pseudo += 17 + uint32(len(udp))
	sum := checksum(udp, pseudo)
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(udp[6:], sum)
	return b
}

// checksum is the Internet checksum (RFC 1071) of b, starting from initial.
func checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return ^uint16(sum)
}

// PCAPPacket is one UDP datagram read back from a pcap file.
type PCAPPacket struct {
	Time     time.Time
	Src, Dst netip.AddrPort
	Payload  []byte // the UDP payload
}

// ReadPCAP reads the IPv4/UDP datagrams of a classic libpcap file with Ethernet or Linux
// "cooked" framing (tshark -F pcap writes either), skipping everything else. Use ParseRTP on the
// payloads.
func ReadPCAP(path string) ([]PCAPPacket, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var hdr [24]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	var order binary.ByteOrder
	nanos := false
	switch {
	case binary.LittleEndian.Uint32(hdr[:]) == pcapMagic:
		order = binary.LittleEndian
	case binary.BigEndian.Uint32(hdr[:]) == pcapMagic:
		order = binary.BigEndian
	case binary.LittleEndian.Uint32(hdr[:]) == 0xa1b23c4d:
		order, nanos = binary.LittleEndian, true
	case binary.BigEndian.Uint32(hdr[:]) == 0xa1b23c4d:
		order, nanos = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("pcap: not a classic libpcap file (magic %x)", hdr[:4])
	}
	var linkHdr int
	switch link := order.Uint32(hdr[20:]); link {
	case pcapLinkEther:
		linkHdr = 14
	case 113: // LINKTYPE_LINUX_SLL
		linkHdr = 16
	default:
		return nil, fmt.Errorf("pcap: link type %d not supported", link)
	}
	var out []PCAPPacket
	for {
		var rec [16]byte
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, fmt.Errorf("pcap record: %w", err)
		}
		frame := make([]byte, order.Uint32(rec[8:]))
		if _, err := io.ReadFull(r, frame); err != nil {
			return out, fmt.Errorf("pcap record: %w", err)
		}
		sub := int64(order.Uint32(rec[4:]))
		if !nanos {
			sub *= 1000
		}
		ts := time.Unix(int64(order.Uint32(rec[0:])), sub).UTC()
		if len(frame) < linkHdr+28 || binary.BigEndian.Uint16(frame[linkHdr-2:]) != 0x0800 {
			continue // not IPv4
		}
		ip := frame[linkHdr:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 {
			continue // not UDP
		}
		udp := ip[ihl:]
		ulen := int(binary.BigEndian.Uint16(udp[4:]))
		if ulen < 8 || ulen > len(udp) {
			continue
		}
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(udp[0:]))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(udp[2:]))
		out = append(out, PCAPPacket{Time: ts, Src: src, Dst: dst, Payload: append([]byte(nil), udp[8:ulen]...)})
	}
}
