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
	static := http.FileServerFS(files)
	s.mux.HandleFunc("GET /callmesh.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		static.ServeHTTP(w, r)
	})
	if !demo {
		return
	}
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, files, "index.html")
	})
	s.mux.Handle("GET /demo/", http.StripPrefix("/demo/", static))
}
