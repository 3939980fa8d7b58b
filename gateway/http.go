package gateway

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/messages"
)

// serveWS admits a client before the upgrade, cheapest check first, each
// refusal with a JSON body (PROTOCOL.md §1): 503 while draining, 403 for a
// foreign browser origin, 429 for too many attempts from the address, 503
// when full, 401 for a bad token (the signature check), 429 for too many
// attempts of the user. It then starts the connection's reader and returns:
// the net/http connection that hijacked it, with its buffers, is let go.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		s.refuseConnect(w, refusedDraining, http.StatusServiceUnavailable, messages.CodeUnavailable, "gateway is shutting down")
		return
	}
	if err := checkOrigin(r, s.cfg.OriginPatterns); err != nil {
		s.refuseConnect(w, refusedOrigin, http.StatusForbidden, messages.CodeForbidden, err.Error())
		return
	}
	if ok, retry := s.guard.addr.allow(sourceKey(r.RemoteAddr), time.Now()); !ok {
		s.tooManyConnects(w, refusedAddrRate, retry, "too many connection attempts from this address; slow down")
		return
	}
	// A slot is taken before it is counted, so that simultaneous requests
	// cannot all see the last one free; a refusal gives it back, and the
	// reader gives it back when the connection ends.
	served := false
	defer func() {
		if !served {
			s.open.Add(-1)
		}
	}()
	if n := s.open.Add(1); s.cfg.MaxConns > 0 && n > int64(s.cfg.MaxConns) {
		s.refuseConnect(w, refusedFull, http.StatusServiceUnavailable, messages.CodeUnavailable, "gateway is full; try another")
		return
	}
	claims, err := s.verifier.Verify(TokenFromRequest(r))
	if err != nil {
		s.refuseConnect(w, refusedUnauthorized, http.StatusUnauthorized, messages.CodeUnauthorized, err.Error())
		return
	}
	if ok, retry := s.guard.user.allow(claims.Subject, time.Now()); !ok {
		s.tooManyConnects(w, refusedUserRate, retry, "too many connection attempts for this user; slow down")
		return
	}
	hj := &hijackRecorder{ResponseWriter: w}
	ws, err := websocket.Accept(hj, r, &websocket.AcceptOptions{OriginPatterns: s.cfg.OriginPatterns})
	if err != nil {
		return // Accept has answered the request
	}
	ws.SetReadLimit(s.cfg.MaxMessageBytes)
	c := newConn(s, ws, claims, r.URL.Query().Get("resume"))
	c.raw = hj.conn
	served = c.run(func() { s.open.Add(-1) })
}

// devGrants are the room grants of a dev token: every room.
var devGrants = Grants{Rooms: []string{"*"}}

// serveDevToken mints a token for ?user=NAME, granting every room. Dev mode
// only.
func (s *Server) serveDevToken(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if err := messages.ValidUserID(user); err != nil {
		writeJSONError(w, http.StatusBadRequest, messages.CodeBadRequest, err.Error())
		return
	}
	token, err := MintGrants(*s.cfg.DevTokens, user, s.cfg.DevTokenTTL, devGrants)
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, messages.CodeInternal, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"user": user, "token": token, "expires_in": int(s.cfg.DevTokenTTL.Seconds())})
}

func writeJSONError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": message})
}
