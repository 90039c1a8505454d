package bspsim

import (
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Fault scripts a misbehaving provider for the next matching requests. A request is validated
// first (a malformed request is refused whatever the script says); then the fault waits Delay,
// and then drops the connection (Drop), answers an error (HTTPStatus and/or Code), or — with
// only a Delay — answers normally, late.
type Fault struct {
	Op         string        // Op*; "" matches every operation
	Times      int           // how many requests it applies to; 0 = all from now on
	Delay      time.Duration // before answering; ends early if the client goes away
	HTTPStatus int           // default: Graph's status for Code (§2.6), or 500 without a code
	Code       int           // Graph error code in the error body, e.g. 138006
	Message    string
	RetryAfter int  // seconds, sent as Retry-After with the error
	Drop       bool // close the connection without an answer
}

type activeFault struct {
	Fault
	left int
}

// Inject adds a fault; faults are matched in the order they were added.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &activeFault{Fault: f, left: f.Times})
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFault returns the first fault for op and counts it used.
func (s *Server) takeFault(op string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Op != "" && f.Op != op {
			continue
		}
		if f.Times > 0 {
			f.left--
			if f.left <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		cp := f.Fault
		return &cp
	}
	return nil
}

// applyFault plays f. done reports that the request was answered (or abandoned) by the fault.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault, rec *Request, commit func()) (done bool) {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			rec.Err = "fault: client went away during the injected delay"
			return true
		case <-s.closing:
			t.Stop()
			rec.Err = "fault: server closed during the injected delay"
			return true
		}
	}
	if f.Drop {
		rec.Err = "fault: connection dropped"
		commit()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return true
	}
	if f.HTTPStatus == 0 && f.Code == 0 {
		return false
	}
	e := &graphError{status: f.HTTPStatus, code: f.Code, message: f.Message}
	if e.status == 0 {
		e.status = graphStatus(f.Code)
		if f.Code == 0 {
			e.status = http.StatusInternalServerError
		}
	}
	if e.message == "" {
		e.message = http.StatusText(e.status)
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	rec.Err = "fault: " + e.Error()
	writeGraphError(w, e)
	return true
}
