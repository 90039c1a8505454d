package sip

import (
	"context"
	"sync"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// Why connections need pinning (sipgo v1.7.2, checked in its source and in
// TestPinnedByeReusesAcceptedConnection):
//
// When Meta calls us, it opens the TLS connection and its INVITE carries
// Record-Route: <sip:wa.meta.vc;transport=tls;lr>, <sip:onevc-sip-proxy.fbinfra.net:8191;…>
// (whatsapp-calling.md §5.2). For a request we send inside that dialog (BYE),
// DialogServerSession.buildReq turns the Record-Route set into Route headers and calls
// req.SetDestination(<top Route host:port>), i.e. "wa.meta.vc:0" → wa.meta.vc:5061. The
// transport layer (TransportLayer.ClientRequestConnection) resolves that to ip:5061 and
// looks for a pooled connection under exactly that key. The connection Meta opened is
// pooled under its remote address, Meta's ephemeral source port (TransportTCP.initConnection
// adds raddr and laddr), so the lookup misses and sipgo dials a new TLS connection to
// Meta — sipgo issue #361. The laddr key cannot be used instead: every accepted connection
// shares the listener's local address, so that entry points at whichever connection was
// accepted last. A fresh connection toward Meta can fail (Meta's FAQ: "if our BYE does not
// hang up the user, suspect a TLS handshake failure on the new outbound connection",
// whatsapp-calling.md §5.3), and Meta's edge expects in-dialog requests on the existing
// connection (§5). Setting the destination before calling DialogServerSession.Bye does not
// help either, because buildReq overwrites it after the caller has built the request.
//
// The only hook that runs after buildReq is sipgo.Client.TxRequester, so the fix is a
// ClientTransactionRequester: ConnectionPinner remembers, per Call-ID, the address of the
// connection a dialog arrived on and sends that dialog's requests to it while the
// connection is alive. The Route headers stay (RFC 3261 §12.2.1.1; Meta's proxies need
// them); only the next hop changes, which is what RFC 5923 connection reuse and RFC 3261
// §18.2.2 do for responses. When the connection is gone, the request falls back to the
// Route as before.
//
// UAC side (we call Meta): we dialed the connection, so it is pooled under the address we
// resolved for wa.meta.vc and the Route toward wa.meta.vc usually finds it — unless DNS
// returns another address for the next lookup. Pinning the 2xx response (Pin accepts it)
// removes that dependence too.

// ConnectionPinner is a sipgo ClientTransactionRequester that sends the requests of pinned
// dialogs over the connection the dialog was set up on; why sipgo v1.7.2 needs this is
// explained at the top of reuse.go. Install it on the client used for the WhatsApp leg:
//
//	pins := wsip.NewConnectionPinner(ua)
//	client.TxRequester = pins
//	...
//	// in OnInvite (UAS), or with the 2xx InviteResponse (UAC):
//	pins.Pin(req)
//	defer pins.Unpin(req.CallID().Value())
//
// Requests of unpinned dialogs go through the user agent's transaction layer unchanged, so
// one client can serve both legs. Note that sipgo marks Client.TxRequester experimental.
// It is safe for concurrent use.
type ConnectionPinner struct {
	tpl *sipmsg.TransportLayer
	txl *sipmsg.TransactionLayer

	mu    sync.Mutex
	pins  map[string]pinnedConn // by Call-ID
	nexts map[string]string     // by Call-ID: where the dialog's INVITE went (see Follow)
}

type pinnedConn struct {
	network string // lower-case: "tls", "tcp", "ws", "wss"
	addr    string // remote ip:port of the connection, as sipgo pools it
}

var _ sipgo.ClientTransactionRequester = (*ConnectionPinner)(nil)

// NewConnectionPinner creates a pinner that uses ua's transport and transaction layers.
func NewConnectionPinner(ua *sipgo.UserAgent) *ConnectionPinner {
	return &ConnectionPinner{
		tpl:   ua.TransportLayer(),
		txl:   ua.TransactionLayer(),
		pins:  make(map[string]pinnedConn),
		nexts: make(map[string]string),
	}
}

// Pin records the connection m arrived on (a dialog-creating INVITE we received, or the 2xx
// to an INVITE we sent) for m's Call-ID. It returns false, and pins nothing, for UDP (there
// is no connection to reuse) or when m has no source or Call-ID.
func (p *ConnectionPinner) Pin(m sipmsg.Message) bool {
	pc, ok := connOf(m)
	if !ok {
		return false
	}
	p.mu.Lock()
	p.pins[m.CallID().Value()] = pc
	p.mu.Unlock()
	return true
}

// Follow records where a dialog's INVITE was sent (host:port), for requests of that dialog
// that carry no Route and have no pinned connection yet. The case that needs it is CANCEL: it
// must go where the INVITE went (RFC 3261 §9.1), but sipgo builds it from the Request-URI
// (sip:+user@wa.meta.vc, so a DNS lookup of Meta's domain instead of the configured edge
// address) whenever the last provisional response seen was a 100 without Record-Route —
// sipgo handles responses in parallel goroutines, so that happens at random.
func (p *ConnectionPinner) Follow(callID, dest string) {
	p.mu.Lock()
	p.nexts[callID] = dest
	p.mu.Unlock()
}

// Unpin forgets the dialog with callID. Call it when the dialog ends, so the map stays
// bounded by the number of live calls.
func (p *ConnectionPinner) Unpin(callID string) {
	p.mu.Lock()
	delete(p.pins, callID)
	delete(p.nexts, callID)
	p.mu.Unlock()
}

// Len returns the number of pinned dialogs (for metrics and leak checks).
func (p *ConnectionPinner) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pins)
}

func connOf(m sipmsg.Message) (pinnedConn, bool) {
	// The connection's remote address is what the transport recorded with SetSource.
	// Request.Source() would fall back to the Via sent-by, which names no connection.
	var src string
	switch v := m.(type) {
	case *sipmsg.Request:
		if v != nil {
			src = v.MessageData.Source()
		}
	case *sipmsg.Response:
		if v != nil {
			src = v.MessageData.Source()
		}
	}
	if src == "" || m.CallID() == nil {
		return pinnedConn{}, false
	}
	network := sipmsg.NetworkToLower(m.Transport())
	if !sipmsg.IsReliable(network) {
		return pinnedConn{}, false
	}
	return pinnedConn{network: network, addr: src}, true
}

// Request implements sipgo.ClientTransactionRequester. sipgo calls it from
// Client.TransactionRequest after the dialog layer has built the request, and from
// Client.WriteRequest for ACKs.
func (p *ConnectionPinner) Request(ctx context.Context, req *sipmsg.Request) (sipmsg.ClientTransaction, error) {
	origDest := req.Destination()
	pinned := false
	if req.CallID() != nil {
		p.mu.Lock()
		pc, ok := p.pins[req.CallID().Value()]
		next, follow := p.nexts[req.CallID().Value()]
		p.mu.Unlock()
		if ok && sipmsg.NetworkToLower(req.Transport()) == pc.network && p.alive(pc) {
			req.SetDestination(pc.addr)
			pinned = true
		} else if follow && req.Route() == nil {
			req.SetDestination(next)
		}
	}

	tx, err := p.send(ctx, req)
	if err != nil && pinned {
		// The connection closed between the check and the send: sipgo would now dial
		// Meta's ephemeral source port. Fall back to the Route, as sipgo would have done.
		req.SetDestination(origDest)
		tx, err = p.send(ctx, req)
	}
	return tx, err
}

// alive reports whether the pinned connection is still in sipgo's pool.
func (p *ConnectionPinner) alive(pc pinnedConn) bool {
	c, err := p.tpl.GetConnection(pc.network, pc.addr)
	if err != nil || c == nil {
		return false
	}
	c.TryClose() // GetConnection took a reference
	return true
}

// send does what sipgo.Client does without a TxRequester (client.go newTransaction and
// writeReq), so installing the pinner changes nothing for unpinned requests.
func (p *ConnectionPinner) send(ctx context.Context, req *sipmsg.Request) (sipmsg.ClientTransaction, error) {
	if req.IsAck() {
		// ACK for a 2xx is not a transaction (RFC 3261 §17.1.1.1); sipgo sends it directly.
		return nil, p.tpl.WriteMsg(req)
	}
	tx, err := p.txl.NewClientTransaction(ctx, req)
	if err != nil {
		return nil, err
	}
	// DialogClientSession.Invite fills a port-less Contact from the Via that the transport
	// layer completed; it skips that when a TxRequester is set, so do it here.
	if req.IsInvite() {
		if cont, via := req.Contact(), req.Via(); cont != nil && via != nil && cont.Address.Port == 0 {
			if cont.Address.Host == "" {
				cont.Address.Host, cont.Address.Port = via.Host, via.Port
			} else if cont.Address.Host == via.Host {
				cont.Address.Port = via.Port
			}
		}
	}
	if err := tx.Init(); err != nil {
		tx.Terminate()
		return nil, err
	}
	return tx, nil
}

// PinToConnection points req at the connection invite arrived on when both use the same
// reliable transport, and reports whether it did. It is for requests
// the bridge sends itself through Client.TransactionRequest / Client.Do with a prebuilt
// request; for requests built by sipgo's dialog sessions (DialogServerSession.Bye, Do)
// use ConnectionPinner, because their buildReq overwrites the destination.
// It does not check that the connection is still open.
func PinToConnection(req *sipmsg.Request, invite *sipmsg.Request) bool {
	pc, ok := connOf(invite)
	if !ok || sipmsg.NetworkToLower(req.Transport()) != pc.network {
		return false
	}
	req.SetDestination(pc.addr)
	return true
}
