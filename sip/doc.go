// Package sip holds the Meta-facing SIP pieces that wabridge adds on top of
// github.com/emiago/sipgo: the digest server that challenges Meta's INVITEs (407/403),
// TLS configurations without ALPN, the slog→logrus bridge for sipgo's logs, WhatsApp
// header helpers, a REGISTER client for PBX trunks, and connection pinning so that
// in-dialog requests toward Meta reuse the TLS connection Meta opened.
//
// sipgo's own message package is imported as sipmsg here; other wabridge packages import
// this one as wsip (docs/design.md).
//
// References used in comments:
//   - whatsapp-calling.md: /work/shared/docs/whatsapp-calling.md (Meta's SIP rules, §0 and §5)
//   - go-libs.md: /work/shared/docs/go-libs.md §1 (sipgo v1.7.2 facts)
package sip
