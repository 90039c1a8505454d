package peertest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBaresipCtrlProtocol runs the ctrl_tcp client against a fake baresip: events interleave
// with the response on one socket, none is lost while nobody reads, and they keep their order.
func TestBaresipCtrlProtocol(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	serverDone := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			serverDone <- err
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		send := func(v any) {
			b, _ := json.Marshal(v)
			fmt.Fprintf(conn, "%d:%s,", len(b), b)
		}
		for i := range 50 { // more events than any channel buffer, before anyone reads
			send(map[string]any{"event": true, "type": "CALL_RTCP", "class": "call", "param": fmt.Sprint(i)})
		}
		var lenStr string
		if lenStr, err = r.ReadString(':'); err != nil {
			serverDone <- err
			return
		}
		var n int
		fmt.Sscan(lenStr[:len(lenStr)-1], &n)
		body := make([]byte, n+1)
		if _, err := r.Read(body); err != nil {
			serverDone <- err
			return
		}
		var cmd map[string]string
		if err := json.Unmarshal(body[:n], &cmd); err != nil {
			serverDone <- err
			return
		}
		send(map[string]any{"event": true, "type": "CALL_RINGING", "class": "call", "peeruri": cmd["params"]})
		send(map[string]any{"response": true, "ok": true, "data": "dialing", "token": cmd["token"]})
		send(map[string]any{"event": true, "type": "CALL_ESTABLISHED", "class": "call", "id": "c1"})
		serverDone <- nil
		time.Sleep(200 * time.Millisecond)
	}()

	c, err := dialBaresipCtrl(l.Addr().String())
	require.NoError(t, err)
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	data, err := c.command(ctx, "dial", "sip:bob@127.0.0.1")
	require.NoError(t, err)
	assert.Equal(t, "dialing", data)
	require.NoError(t, <-serverDone)

	for i := range 50 {
		ev := <-c.events
		require.Equal(t, "CALL_RTCP", ev.Type)
		require.Equal(t, fmt.Sprint(i), ev.Param)
	}
	ev := <-c.events
	assert.Equal(t, "CALL_RINGING", ev.Type)
	assert.Equal(t, "sip:bob@127.0.0.1", ev.PeerURI)
	ev = <-c.events
	assert.Equal(t, "CALL_ESTABLISHED", ev.Type)
	assert.Equal(t, "c1", ev.ID)
	assert.Contains(t, ev.Raw, `"CALL_ESTABLISHED"`)
	assert.Len(t, c.historyCopy(), 52)

	_, ok := <-c.events // the server hung up: the channel closes
	assert.False(t, ok)
}
