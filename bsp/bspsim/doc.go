// Package bspsim emulates the WhatsApp calling HTTP APIs of Meta's Graph API and of the BSPs
// wabridge supports (Positus, Vectalk, Concepto Móvil, 360dialog), strictly: each Server accepts
// exactly the request shapes in the golden files (testdata/golden of package bsp, embedded here
// so `wabridge demo` can run without the source tree), with the provider's auth header, path and
// method, and answers anything else with 400 and a Graph-style error body. It records every
// request, answers with the documented bodies, keeps the state Meta would (calls, call hours
// replaced wholesale, SIP mode), injects scripted faults, and sends the documented webhooks to a
// URL, signed where the provider signs.
//
// The emulator is written independently of package bsp's encoders and parsers on purpose (it
// shares only provider names and the signature primitive), so a misreading of a provider's
// documentation in one cannot hide the same misreading in the other.
package bspsim
