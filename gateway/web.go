package gateway

import (
	"embed"
	"io/fs"
	"net/http"
)

// web holds the browser client (callmesh.js) and the demo page.
//
//go:embed web
var web embed.FS

// serveWeb adds GET /callmesh.js and, with demo, the demo page at /.
func (s *Server) serveWeb(demo bool) {
	files, _ := fs.Sub(web, "web") // a constant, present directory
	static := revalidate(http.FileServerFS(files))
	s.mux.Handle("GET /callmesh.js", static)
	if !demo {
		return
	}
	s.mux.Handle("GET /{$}", revalidate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "index.html")
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
