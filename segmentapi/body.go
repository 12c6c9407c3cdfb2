package segmentapi

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
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
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(body)
		} else {
			err = zr.Reset(body)
		}
		if err != nil {
			return nil, bodyError(err)
		}
		defer func() {
			// Let go of this body before the reader waits in the pool.
			_ = zr.Reset(bytes.NewReader(nil))
			gzipReaders.Put(zr)
		}()
		src = zr
	default:
		return nil, errEncoding
	}
	// Sized from Content-Length (a gzipped body is guessed at four times
	// its length), so that reading does not grow the buffer step by step;
	// capped at the limit, whatever the header claims.
	size := r.ContentLength
	if src != io.Reader(body) {
		size *= 4
	}
	buf := bytes.NewBuffer(make([]byte, 0, max(min(size, limit)+1, 512)))
	if _, err := buf.ReadFrom(io.LimitReader(src, limit+1)); err != nil {
		return nil, bodyError(err)
	}
	if int64(buf.Len()) > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// gzipReaders keeps gzip readers for reuse: each holds a 32 KB window.
var gzipReaders sync.Pool

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
