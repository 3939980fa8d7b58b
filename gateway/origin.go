package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// checkOrigin refuses a browser's request from an origin it may not use,
// by the rule coder/websocket's Accept applies (authenticateOrigin, v1.8):
// a request without Origin (not a browser) passes; so does an origin whose
// host is the request's Host, case-insensitively, or matches one of
// patterns, with path.Match on lower case, against the origin's host, or
// against scheme://host for a pattern with "://". serveWS checks it before
// the token, so that a foreign page learns nothing about tokens; Accept
// checks it again. Config.Validate refuses malformed patterns, which Accept
// would turn into a 403 for every origin that reaches them.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil {
		return fmt.Errorf("origin %q is not a URL", origin)
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return fmt.Errorf("origin %q is not allowed", origin)
}
