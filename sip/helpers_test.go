package sip

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 5 * time.Second

func TestMain(m *testing.M) {
	// sipgo logs through slog; route it through our bridge (which exercises it). Level
	// Error: sipgo v1.7.2 warns "TCP/UDP ref went negative" on every connection teardown
	// (go-libs.md §1.5 item 3), which is noise here.
	l := logrus.New()
	l.SetLevel(logrus.ErrorLevel)
	l.SetOutput(os.Stderr)
	sipmsg.SetDefaultLogger(NewSlogLogger(logrus.NewEntry(l).WithField("component", "sipgo")))

	goleak.VerifyTestMain(m)
}

// testHosts are the SANs of the test certificate: loopback plus Meta's edge name, so a
// client can verify "wa.meta.vc" against a loopback server.
var testHosts = []string{"127.0.0.1", "::1", "localhost", "wa.meta.vc"}

// writeCert writes a fresh self-signed certificate and key into dir.
func writeCert(t *testing.T, dir string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := GenerateSelfSigned(hosts...)
	require.NoError(t, err)
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	return certFile, keyFile
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepts atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepts.Add(1)
	}
	return c, err
}

// listenTLS listens on an OS-chosen loopback port and returns the TCP-level counting
// listener and a TLS listener on top of it.
func listenTLS(t *testing.T, cfg *tls.Config) (*countingListener, net.Listener) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cl := &countingListener{Listener: l}
	return cl, tls.NewListener(cl, cfg)
}

func portOf(t *testing.T, a net.Addr) int {
	t.Helper()
	_, p, err := net.SplitHostPort(a.String())
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}

// sipText joins header lines into a SIP message, setting Content-Length from body.
func sipText(body string, lines ...string) string {
	return strings.Join(lines, "\r\n") + fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n", len(body)) + body
}

func parseRequest(t *testing.T, text string) *sipmsg.Request {
	t.Helper()
	m, err := sipmsg.ParseMessage([]byte(text))
	require.NoError(t, err)
	req, ok := m.(*sipmsg.Request)
	require.True(t, ok)
	return req
}

// readSIP reads one SIP message from a stream: headers up to the blank line, then
// Content-Length bytes of body.
func readSIP(br *bufio.Reader) (sipmsg.Message, error) {
	var buf bytes.Buffer
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if buf.Len() == 0 && strings.TrimSpace(line) == "" {
			continue // keep-alive CRLF between messages
		}
		buf.WriteString(line)
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			break
		}
		name, value, ok := strings.Cut(trimmed, ":")
		if ok && (strings.EqualFold(strings.TrimSpace(name), "Content-Length") || strings.TrimSpace(name) == "l") {
			length, err = strconv.Atoi(strings.TrimSpace(value))
			if err != nil {
				return nil, err
			}
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	buf.Write(body)
	return sipmsg.ParseMessage(buf.Bytes())
}

// readSIPConn reads one message from c within testTimeout.
func readSIPConn(c net.Conn, br *bufio.Reader) (sipmsg.Message, error) {
	if err := c.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		return nil, err
	}
	return readSIP(br)
}
