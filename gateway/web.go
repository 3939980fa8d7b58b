package gateway

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"time"
)

// web holds the browser client (callmesh.js) and the demo page.
//
//go:embed web
var web embed.FS

// serveWeb adds GET /callmesh.js and, with demo, the demo page at /. The
// page signs in with a pasted token (its body's data-signin="token"), or,
// with devTokens, by name with a token from /dev/token (data-signin="dev").
func (s *Server) serveWeb(demo, devTokens bool) {
	files, _ := fs.Sub(web, "web") // a constant, present directory
	static := revalidate(http.FileServerFS(files))
	s.mux.Handle("GET /callmesh.js", static)
	if !demo {
		return
	}
	page, _ := fs.ReadFile(files, "index.html") // a constant, present file
	if devTokens {
		page = bytes.Replace(page, []byte(`data-signin="token"`), []byte(`data-signin="dev"`), 1)
	}
	s.mux.Handle("GET /{$}", revalidate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(page))
	})))
	s.mux.Handle("GET /demo/", http.StripPrefix("/demo/", static))
}

// revalidate makes browsers check for a newer file on every load (the files
// change with the binary; Last-Modified keeps the check cheap).
func revalidate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
