package main

import (
	"net/http"
	"net/http/pprof"
)

// withPprof serves Go's profiles (net/http/pprof) at /debug/pprof/ beside
// h when debug.pprof is on, and h alone otherwise. The profiles show the
// process's internals and cost CPU while taken: turn it on only where the
// listener is private.
func withPprof(h http.Handler, on bool) http.Handler {
	if !on {
		return h
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	return mux
}
