package sip

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"sync"
	"time"
)

// ServerTLSConfig is the configuration for our SIP/TLS listener (port 5061 by default),
// which Meta dials for user-initiated calls.
//
//   - TLS 1.2 or newer.
//   - No client certificate is requested: Meta does no mutual TLS and, when asked for a
//     certificate, presents one for a random dynamic host that does not validate
//     (whatsapp-calling.md §5.1). ClientAuth is explicitly tls.NoClientCert.
//   - NextProtos stays nil: we neither require nor select ALPN (whatsapp-calling.md §7,
//     ISS-LK685).
//   - The certificate is re-read when certFile or keyFile changes on disk (checked on each
//     handshake; Meta's connections are long-lived, so that is rare), so a renewed
//     certificate is served without a restart that would drop calls. If the new files
//     cannot be loaded (e.g. half-written), the previous certificate keeps being served.
//
// Meta validates our certificate against the hostname configured for the number, and
// certificate errors are the first cause of "no INVITE received" (whatsapp-calling.md §5.1).
func ServerTLSConfig(certFile, keyFile string) (*tls.Config, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.NoClientCert,
		GetCertificate: r.get,
	}, nil
}

// certReloader serves a key pair and reloads it when the files' size or mtime change.
type certReloader struct {
	certFile, keyFile string

	mu     sync.Mutex
	cert   *tls.Certificate
	certSt fileStamp
	keySt  fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

func (r *certReloader) load() error {
	cs, err := stamp(r.certFile)
	if err != nil {
		return fmt.Errorf("sip: TLS certificate: %w", err)
	}
	ks, err := stamp(r.keyFile)
	if err != nil {
		return fmt.Errorf("sip: TLS key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("sip: TLS key pair %s, %s: %w", r.certFile, r.keyFile, err)
	}
	r.mu.Lock()
	r.cert, r.certSt, r.keySt = &cert, cs, ks
	r.mu.Unlock()
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cs, err1 := stamp(r.certFile)
	ks, err2 := stamp(r.keyFile)
	r.mu.Lock()
	changed := err1 == nil && err2 == nil && (cs != r.certSt || ks != r.keySt)
	r.mu.Unlock()
	if changed {
		_ = r.load() // on failure keep serving the previous certificate; retried next handshake
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, nil
}

// ClientTLSConfig is the dial-side configuration for sipgo's user agent
// (sipgo.WithUserAgenTLSConfig), used toward wa.meta.vc:5061 and any TLS PBX.
//
//   - Roots are the system pool plus, if caFile is not "", the PEM certificates in it (for a
//     private PBX CA, or the emulator's self-signed certificate in tests and demos).
//   - serverName, if not "", is the name verified in the peer's certificate. Leave it ""
//     for a shared user agent: sipgo then fills in the host it dials, per connection
//     (sip/transport_tls.go), which is wa.meta.vc for Meta.
//   - NextProtos stays nil: Meta's TLS listener rejects ALPN "sip" with alert 120
//     no_application_protocol (whatsapp-calling.md §0 item 17 and §7, livekit/sip#685).
//   - A session cache makes the extra connections that in-dialog requests may need (see
//     reuse.go) resume instead of doing a full handshake.
func ClientTLSConfig(caFile string, serverName string) (*tls.Config, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if caFile != "" {
		pemData, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("sip: TLS CA file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("sip: TLS CA file %s: no PEM certificates", caFile)
		}
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            roots,
		ServerName:         serverName,
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
	}, nil
}

// GenerateSelfSigned makes a self-signed ECDSA P-256 certificate valid for one year for the
// given hosts (IP addresses become IP SANs, anything else DNS SANs), returning PEM-encoded
// certificate and PKCS#8 key. The certificate is its own CA, so the same PEM works as the
// server's certificate and as ClientTLSConfig's caFile. For tests, the emulator and
// `wabridge demo`; never for talking to Meta, which validates our certificate.
func GenerateSelfSigned(hosts ...string) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("sip: GenerateSelfSigned needs at least one host")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"wabridge self-signed"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew between peers
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}
