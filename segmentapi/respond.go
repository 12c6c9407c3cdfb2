package segmentapi

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/gdprkit/privacy"
)

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	writeJSONAs(w, status, v)
}

// writeJSONAs answers with status and v as JSON, under the Content-Type
// already set.
func writeJSONAs(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Every value written here is the package's own: a failure is a bug,
		// answered without the value.
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"server_error","message":"the answer could not be encoded"}}`)
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// logFailure logs a request failed by a server-side error: the endpoint
// pattern and the error's class only.
func (c *config) logFailure(r *http.Request, what string, err error) {
	c.logger.LogAttrs(r.Context(), slog.LevelError, "segmentapi: "+what+" failed",
		slog.String("method", r.Method), slog.String("endpoint", r.Pattern), slog.String("class", privacy.ErrorKind(err)))
}

// basicUser returns the user name of r's HTTP Basic credentials.
func basicUser(r *http.Request) string {
	user, _, ok := r.BasicAuth()
	if !ok {
		return ""
	}
	return user
}
