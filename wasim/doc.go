// Package wasim emulates the WhatsApp side of WhatsApp Business Calling in SIP mode: Meta's
// SIP/TLS edge (wa.meta.vc) and its media, per business number (Number.SRTP) either an
// SDES-SRTP peer (Peer) or Meta's default WebRTC profile, ICE-lite plus DTLS-SRTP
// (WebRTCPeer, a pion PeerConnection configured like Meta's media server). Both implement
// Media and record and send alike (stream.go). wabridge's end-to-end tests drive it, and so
// do the product's `wabridge demo` and `wabridge selftest` commands.
//
// The emulator is strict on purpose. Whatever Meta's edge rejects is rejected here with the
// code from whatsapp-calling.md §5.3, and whatever would break a real call without an error
// response (a lost Record-Route, a re-INVITE, ALPN "sip" in the TLS ClientHello, media
// before the answer, no maiden packet) is recorded as a violation that tests can assert on
// (Call.Violations, Edge.Violations).
//
// Two directions:
//   - business-initiated (wabridge → edge): wabridge sends INVITE to
//     sip:+<user>@wa.meta.vc;transport=tls; the edge challenges with 407, checks the
//     credentials, the From number and host and the SDP offer, then rings and answers
//     according to EdgeConfig.OnInvite. Calls are handed out by Edge.NextCall.
//   - user-initiated (edge → wabridge): Edge.Dial sends an INVITE shaped like Meta's
//     (whatsapp-calling.md §5.2) over a TLS connection it opens, answers wabridge's digest
//     challenge once and checks the 200 OK strictly.
//
// One sipgo UserAgent serves both directions, and connections the edge dials are handed to
// sipgo's TLS transport as if they had been accepted (see upstream.go), so wabridge can
// send in-dialog requests back on the connection Meta opened, as it must with the real edge.
//
// Documents referred to in comments live in /work/shared/docs: whatsapp-calling.md (Meta's
// rules), go-libs.md (sipgo and pion facts).
package wasim
