package sip

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tlsServer accepts TLS connections, completes the handshake and records what it saw.
type tlsServer struct {
	addr string

	mu     sync.Mutex
	hellos []*tls.ClientHelloInfo
	states []tls.ConnectionState
	wg     sync.WaitGroup
	ln     net.Listener
}

func startTLSServer(t *testing.T, cfg *tls.Config, network, addr string) *tlsServer {
	t.Helper()
	s := &tlsServer{}
	// GetConfigForClient sees the ClientHello: record the ALPN protocols offered.
	cfg.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		s.mu.Lock()
		s.hellos = append(s.hellos, chi)
		s.mu.Unlock()
		return nil, nil
	}
	l, err := net.Listen(network, addr)
	if err != nil && network == "tcp6" {
		t.Skip("no IPv6 loopback:", err)
	}
	require.NoError(t, err)
	ln := tls.NewListener(l, cfg)
	s.ln = ln
	s.addr = ln.Addr().String()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(testTimeout))
				if tc.Handshake() == nil {
					s.mu.Lock()
					s.states = append(s.states, tc.ConnectionState())
					s.mu.Unlock()
					// Wait for the client to close, so the handshake is complete on its side.
					var b [1]byte
					_, _ = tc.Read(b[:])
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func TestTLSConfigsHandshakeWithoutALPN(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, testHosts...)
	otherDir := t.TempDir()
	otherCA, _ := writeCert(t, otherDir, testHosts...)

	tests := []struct {
		name       string
		caFile     string
		serverName string
		dialHost   string
		wantErr    string
	}{
		{name: "meta edge name", caFile: certFile, serverName: "wa.meta.vc", dialHost: "127.0.0.1"},
		{name: "localhost", caFile: certFile, serverName: "localhost", dialHost: "127.0.0.1"},
		{name: "ip from dialed address", caFile: certFile, dialHost: "127.0.0.1"},
		{name: "ipv6 loopback", caFile: certFile, dialHost: "::1"},
		{name: "name not in certificate", caFile: certFile, serverName: "wrong.example", dialHost: "127.0.0.1", wantErr: "certificate is valid for"},
		{name: "untrusted certificate", caFile: otherCA, serverName: "wa.meta.vc", dialHost: "127.0.0.1", wantErr: "certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srvCfg, err := ServerTLSConfig(certFile, keyFile)
			require.NoError(t, err)
			assert.Nil(t, srvCfg.NextProtos)
			assert.Equal(t, tls.NoClientCert, srvCfg.ClientAuth)
			assert.Equal(t, uint16(tls.VersionTLS12), srvCfg.MinVersion)

			network := "tcp4"
			if tc.dialHost == "::1" {
				network = "tcp6"
			}
			s := startTLSServer(t, srvCfg, network, net.JoinHostPort(tc.dialHost, "0"))

			cliCfg, err := ClientTLSConfig(tc.caFile, tc.serverName)
			require.NoError(t, err)
			assert.Nil(t, cliCfg.NextProtos, "Meta rejects ALPN sip with alert 120")
			var certRequested bool
			cliCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				certRequested = true
				return &tls.Certificate{}, nil
			}

			_, port, _ := net.SplitHostPort(s.addr)
			d := &net.Dialer{Timeout: testTimeout}
			conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(tc.dialHost, port), cliCfg)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			st := conn.ConnectionState()
			conn.Close()

			assert.Equal(t, "", st.NegotiatedProtocol)
			assert.GreaterOrEqual(t, st.Version, uint16(tls.VersionTLS12))
			assert.False(t, certRequested, "server must not request a client certificate (Meta does no mTLS)")

			s.ln.Close()
			s.wg.Wait()
			s.mu.Lock()
			defer s.mu.Unlock()
			require.Len(t, s.hellos, 1)
			assert.Empty(t, s.hellos[0].SupportedProtos, "client offered ALPN")
			require.Len(t, s.states, 1)
			assert.Equal(t, "", s.states[0].NegotiatedProtocol)
			assert.Empty(t, s.states[0].PeerCertificates, "no client certificate")
		})
	}
}

func TestServerTLSConfigReloadsCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, testHosts...)
	srvCfg, err := ServerTLSConfig(certFile, keyFile)
	require.NoError(t, err)

	serial := func() string {
		c, err := srvCfg.GetCertificate(&tls.ClientHelloInfo{})
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		require.NoError(t, err)
		return leaf.SerialNumber.String()
	}
	first := serial()
	assert.Equal(t, first, serial(), "unchanged files are not reloaded")

	// Renewal: new files, newer mtime.
	certPEM, keyPEM, err := GenerateSelfSigned(testHosts...)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	later := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(certFile, later, later))
	require.NoError(t, os.Chtimes(keyFile, later, later))
	second := serial()
	assert.NotEqual(t, first, second)

	// A broken renewal keeps the last good certificate.
	require.NoError(t, os.WriteFile(keyFile, []byte("garbage"), 0o600))
	later = later.Add(time.Minute)
	require.NoError(t, os.Chtimes(keyFile, later, later))
	assert.Equal(t, second, serial())
}

func TestTLSConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "localhost")
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))

	_, err := ServerTLSConfig(filepath.Join(dir, "missing.pem"), keyFile)
	assert.Error(t, err)
	_, err = ServerTLSConfig(certFile, notPEM)
	assert.Error(t, err)
	_, err = ClientTLSConfig(notPEM, "")
	assert.Error(t, err)
	_, err = ClientTLSConfig(filepath.Join(dir, "missing.pem"), "")
	assert.Error(t, err)
	cfg, err := ClientTLSConfig("", "wa.meta.vc")
	require.NoError(t, err)
	assert.Equal(t, "wa.meta.vc", cfg.ServerName)
	assert.NotNil(t, cfg.RootCAs)
}

func TestGenerateSelfSigned(t *testing.T) {
	t.Parallel()
	certPEM, keyPEM, err := GenerateSelfSigned(testHosts...)
	require.NoError(t, err)
	block, _ := pem.Decode(certPEM)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	assert.Equal(t, x509.ECDSA, cert.PublicKeyAlgorithm)
	assert.ElementsMatch(t, []string{"localhost", "wa.meta.vc"}, cert.DNSNames)
	require.Len(t, cert.IPAddresses, 2)
	assert.True(t, cert.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")))
	assert.True(t, cert.IPAddresses[1].Equal(net.ParseIP("::1")))
	_, err = tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)

	_, _, err = GenerateSelfSigned()
	assert.Error(t, err)
}
