package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/messages"
)

// serveWS authenticates before the upgrade (401 with a JSON body) and then
// serves the connection on this goroutine, which becomes its reader.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		writeJSONError(w, http.StatusServiceUnavailable, messages.CodeUnavailable, "gateway is shutting down")
		return
	}
	if s.cfg.MaxConns > 0 && s.open.Load() >= int64(s.cfg.MaxConns) {
		writeJSONError(w, http.StatusServiceUnavailable, messages.CodeUnavailable, "gateway is full; try another")
		return
	}
	claims, err := s.verifier.Verify(TokenFromRequest(r))
	if err != nil {
		writeJSONError(w, http.StatusUnauthorized, messages.CodeUnauthorized, err.Error())
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.cfg.OriginPatterns})
	if err != nil {
		return // Accept has answered the request
	}
	ws.SetReadLimit(s.cfg.MaxMessageBytes)
	s.open.Add(1)
	defer s.open.Add(-1)
	newConn(s, ws, claims, r.URL.Query().Get("resume")).run()
}

// serveDevToken mints a token for ?user=NAME. Dev mode only.
func (s *Server) serveDevToken(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if err := messages.ValidUserID(user); err != nil {
		writeJSONError(w, http.StatusBadRequest, messages.CodeBadRequest, err.Error())
		return
	}
	token, err := Mint(*s.cfg.DevTokens, user, s.cfg.DevTokenTTL)
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
