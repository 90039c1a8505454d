package peertest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// BaresipEvent is one event baresip's ctrl_tcp module reports, e.g. CALL_ESTABLISHED.
type BaresipEvent struct {
	Type       string `json:"type"`  // CALL_INCOMING, CALL_RINGING, CALL_ESTABLISHED, CALL_MENC, CALL_CLOSED, …
	Class      string `json:"class"` // "call", "register", …
	AccountAOR string `json:"accountaor"`
	Direction  string `json:"direction"` // "incoming" or "outgoing"
	PeerURI    string `json:"peeruri"`
	ID         string `json:"id"`    // call id
	Param      string `json:"param"` // e.g. CALL_MENC "0,audio,AES_CM_128_HMAC_SHA1_80"; CALL_CLOSED the reason
	Raw        string `json:"-"`     // the JSON as received
}

// ctrlMessage is either a command response or an event; ctrl_tcp sends both on one socket.
type ctrlMessage struct {
	Response bool   `json:"response"`
	Event    bool   `json:"event"`
	OK       bool   `json:"ok"`
	Data     string `json:"data"`
	Token    string `json:"token"`
	BaresipEvent
}

// baresipCtrl is a client of ctrl_tcp: netstring-framed JSON ("LEN:{…},") in both directions.
type baresipCtrl struct {
	conn net.Conn

	writeMu sync.Mutex
	token   int

	mu        sync.Mutex
	waiters   map[string]chan ctrlMessage // by token
	history   []BaresipEvent
	pending   []BaresipEvent // not yet delivered on events
	readErr   error
	notify    chan struct{} // cap 1: pending grew or the reader ended
	readerEnd chan struct{}

	events chan BaresipEvent
	closed chan struct{}
	once   sync.Once
}

func dialBaresipCtrl(addr string) (*baresipCtrl, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	c := &baresipCtrl{
		conn:      conn,
		waiters:   map[string]chan ctrlMessage{},
		notify:    make(chan struct{}, 1),
		readerEnd: make(chan struct{}),
		events:    make(chan BaresipEvent),
		closed:    make(chan struct{}),
	}
	go c.read()
	go c.pump()
	return c, nil
}

// read parses netstrings until the connection ends, answering waiters and queueing events.
func (c *baresipCtrl) read() {
	defer close(c.readerEnd)
	r := bufio.NewReader(c.conn)
	for {
		msg, raw, err := readNetstring(r)
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			c.wake()
			return
		}
		c.mu.Lock()
		switch {
		case msg.Response:
			if ch, ok := c.waiters[msg.Token]; ok {
				ch <- msg // buffered, one response per token
				delete(c.waiters, msg.Token)
			}
		case msg.Event:
			ev := msg.BaresipEvent
			ev.Raw = raw
			c.history = append(c.history, ev)
			c.pending = append(c.pending, ev)
		}
		c.mu.Unlock()
		c.wake()
	}
}

func (c *baresipCtrl) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// pump hands queued events to the events channel in order, so a slow reader never blocks the
// socket (and with it the command responses).
func (c *baresipCtrl) pump() {
	defer close(c.events)
	for {
		c.mu.Lock()
		var next *BaresipEvent
		if len(c.pending) > 0 {
			next = &c.pending[0]
		}
		ended := c.readErr != nil
		c.mu.Unlock()
		if next == nil {
			if ended {
				return
			}
			select {
			case <-c.notify:
			case <-c.closed:
				return
			}
			continue
		}
		select {
		case c.events <- *next:
			c.mu.Lock()
			c.pending = c.pending[1:]
			c.mu.Unlock()
		case <-c.closed:
			return
		}
	}
}

// readNetstring reads one "LEN:JSON," frame.
func readNetstring(r *bufio.Reader) (ctrlMessage, string, error) {
	lenStr, err := r.ReadString(':')
	if err != nil {
		return ctrlMessage{}, "", err
	}
	n, err := strconv.Atoi(lenStr[:len(lenStr)-1])
	if err != nil || n < 0 || n > 1<<20 {
		return ctrlMessage{}, "", fmt.Errorf("ctrl_tcp: bad netstring length %q", lenStr)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return ctrlMessage{}, "", err
	}
	if buf[n] != ',' {
		return ctrlMessage{}, "", errors.New("ctrl_tcp: netstring without trailing comma")
	}
	var msg ctrlMessage
	if err := json.Unmarshal(buf[:n], &msg); err != nil {
		return ctrlMessage{}, "", fmt.Errorf("ctrl_tcp: %w in %q", err, buf[:n])
	}
	return msg, string(buf[:n]), nil
}

// command sends a command (a menu command such as "dial") and waits for its response.
func (c *baresipCtrl) command(ctx context.Context, cmd, params string) (string, error) {
	c.writeMu.Lock()
	c.token++
	token := "peertest-" + strconv.Itoa(c.token)
	ch := make(chan ctrlMessage, 1)
	c.mu.Lock()
	c.waiters[token] = ch
	c.mu.Unlock()
	body, _ := json.Marshal(map[string]string{"command": cmd, "params": params, "token": token})
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := fmt.Fprintf(c.conn, "%d:%s,", len(body), body)
	c.writeMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("ctrl_tcp %s: %w", cmd, err)
	}
	select {
	case msg := <-ch:
		if !msg.OK {
			return msg.Data, fmt.Errorf("ctrl_tcp %s %s: failed: %s", cmd, params, msg.Data)
		}
		return msg.Data, nil
	case <-c.readerEnd:
		return "", fmt.Errorf("ctrl_tcp %s: connection closed", cmd)
	case <-ctx.Done():
		return "", fmt.Errorf("ctrl_tcp %s: %w", cmd, ctx.Err())
	}
}

func (c *baresipCtrl) close() {
	c.once.Do(func() {
		close(c.closed)
		c.conn.Close()
	})
}

func (c *baresipCtrl) historyCopy() []BaresipEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]BaresipEvent(nil), c.history...)
}
