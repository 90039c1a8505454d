package bsp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// Signature headers. Meta signs every webhook with HMAC-SHA256 of the raw body keyed with the
// app secret, as "sha256=<hex>" in X-Hub-Signature-256 (whatsapp-calling.md §3.2). 360dialog
// signs partner webhooks the same way with the platform secret in x-360dialog-signature
// (360dialog docs, "Signature Validation"); Guess: the value is hex, with or without Meta's
// "sha256=" prefix — both are accepted.
const (
	SignatureHeaderMeta      = "X-Hub-Signature-256"
	SignatureHeader360dialog = "X-360dialog-Signature"
)

// SignatureHeaderFor is the header a provider signs webhooks in; "" for providers that do not
// sign (Positus: "documentação não disponível", §6a). Vectalk and Concepto Móvil document no
// webhook at all; Guess: Meta's header, used only when an app secret is configured.
func SignatureHeaderFor(provider string) string {
	switch provider {
	case Provider360dialog:
		return SignatureHeader360dialog
	case ProviderPositus:
		return ""
	}
	return SignatureHeaderMeta
}

var (
	errSignatureMissing = errors.New("signature header missing")
	errSignatureInvalid = errors.New("signature does not match the body")
)

// Sign returns Meta's signature header value for body: "sha256=" + hex(HMAC-SHA256(secret, body)).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// verifySignature checks a signature header value against the raw body in constant time.
func verifySignature(secret, value string, body []byte) error {
	v := strings.TrimSpace(value)
	if v == "" {
		return errSignatureMissing
	}
	if len(v) > 7 && strings.EqualFold(v[:7], "sha256=") {
		v = v[7:]
	}
	got, err := hex.DecodeString(v)
	if err != nil || len(got) != sha256.Size {
		return errSignatureInvalid
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return errSignatureInvalid
	}
	return nil
}
