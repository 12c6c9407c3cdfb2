package segmentapi

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strings"
)

var (
	errTooLarge = errors.New("request body too large")
	errEncoding = errors.New("unsupported Content-Encoding")
	errGzip     = errors.New("the gzip body is corrupt")
)

// readBody reads r's body, gunzipped when its Content-Encoding says gzip.
// The limit bounds the bytes sent and the bytes they decompress to: a
// longer body fails with errTooLarge having read at most limit+1 bytes of
// either, so a gzip bomb costs no more than an honest body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	var src io.Reader = body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, bodyError(err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, errEncoding
	}
	b, err := io.ReadAll(io.LimitReader(src, limit+1))
	if err != nil {
		return nil, bodyError(err)
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return errTooLarge
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum), errors.Is(err, io.ErrUnexpectedEOF):
		return errGzip
	}
	return err
}
