// Package pbxsim is a small simulated PBX: a SIP user agent that behaves like a PBX trunk peer
// (Asterisk, FreeSWITCH) toward wabridge's PBX side. It speaks SIP over UDP (and optionally
// TCP) and plain RTP/AVP media over UDP, and it is used by `wabridge demo` (which must run with
// no configuration and no network beyond loopback) and by wabridge's end-to-end tests.
//
// Incoming calls (wabridge → PBX, a WhatsApp user calling the business) are answered by a
// policy, Config.Answer, which returns an Answer: ring for a while, then 200 with media
// behaviour (echo, play payloads, send nothing, hang up after a delay) or a failure code (486,
// 603, 480, ...). Each incoming call is published on Calls() so a test or the demo can observe
// it. Outgoing calls (PBX → wabridge, the business calling a WhatsApp user) are placed with
// Dial, which returns a *CallError carrying the SIP status of a failed call.
//
// Media is an RTPPeer: one UDP socket on Config.MediaIP with an OS-chosen port that sends from
// the socket it receives on (symmetric RTP, RFC 4961) to the address in the remote SDP, records
// every received packet, decodes RFC 4733 DTMF and keeps the RFC 3550 loss and jitter estimates
// that the demo reports. We do not latch onto the source address of what we receive (Asterisk's
// rtp_symmetric=no): wabridge must advertise the address it really uses.
//
// In a dialog the PBX answers BYE, re-INVITE and UPDATE (200 with the same SDP, following the
// peer if its media address moved) and, outside, OPTIONS and REGISTER (accepted without
// authentication, so wabridge's pbx.register can be pointed at it). SRTP offers and offers
// without a common codec get 488, as from Asterisk; so do INVITEs without SDP (late offer),
// which Asterisk would take but wabridge never sends.
//
// Signalling sits on sipgo's dialog layer (DialogUA, DialogServerSession, DialogClientSession)
// (docs/style.md); its transport layer is only looked at to get around two start/stop races
// (PBX.Start, PBX.sweepStragglers). sipgo runs every request in its own goroutine
// (go-libs.md §1.5 item 1), so each Call serialises its in-dialog requests with a mutex and
// tolerates reordering: a BYE that overtakes the ACK of our 200 ends the call, and the late
// ACK is ignored.
//
// Logs go to Config.Log with leg=pbx-sim and, per call, call_id.
//
// Documents referred to in comments live in /work/shared/docs: go-libs.md (sipgo and pion
// facts) and style.md.
package pbxsim
