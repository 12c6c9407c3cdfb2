package pgxcopy

import (
	"context"
	"errors"
	"io"
	"reflect"
	"sync"
)

// CopyFunc runs query, a COPY ... FROM STDIN, with r's rows, and returns
// how many rows it copied.
type CopyFunc func(ctx context.Context, query string, r io.Reader) (int64, error)

// Conn is a driver connection that runs a COPY itself: a wrapper of pgx's
// connection (one that counts or traces statements) implements it, and For
// takes it before looking for pgx's methods.
type Conn interface {
	CopyFrom(ctx context.Context, query string, r io.Reader) (int64, error)
}

// For returns how driverConn (what sql.Conn.Raw hands its function) runs a
// COPY, or nil when it cannot.
func For(driverConn any) CopyFunc {
	if c, ok := driverConn.(Conn); ok {
		return c.CopyFrom
	}
	if driverConn == nil || !pgxShaped(reflect.TypeOf(driverConn)) {
		return nil
	}
	pg := reflect.ValueOf(driverConn).MethodByName("Conn").Call(nil)[0]
	if pg.IsNil() {
		return nil
	}
	pgConn := pg.MethodByName("PgConn").Call(nil)[0]
	if pgConn.IsNil() {
		return nil
	}
	copyFrom := pgConn.MethodByName("CopyFrom")
	return func(ctx context.Context, query string, r io.Reader) (int64, error) {
		out := copyFrom.Call([]reflect.Value{reflect.ValueOf(&ctx).Elem(), reflect.ValueOf(&r).Elem(), reflect.ValueOf(query)})
		n := out[0].MethodByName("RowsAffected").Call(nil)[0].Int()
		if err, _ := out[1].Interface().(error); err != nil {
			return n, err
		}
		return n, nil
	}
}

// shapes caches pgxShaped's answer by type.
var shapes sync.Map // reflect.Type -> bool

var (
	contextType = reflect.TypeFor[context.Context]()
	readerType  = reflect.TypeFor[io.Reader]()
	errorType   = reflect.TypeFor[error]()
)

// pgxShaped reports whether t has pgx's methods, down to CopyFrom's
// CommandTag.
func pgxShaped(t reflect.Type) bool {
	if v, ok := shapes.Load(t); ok {
		return v.(bool)
	}
	ok := func() bool {
		pg, ok := getter(t, "Conn")
		if !ok {
			return false
		}
		pgConn, ok := getter(pg, "PgConn")
		if !ok {
			return false
		}
		m, ok := pgConn.MethodByName("CopyFrom")
		if !ok {
			return false
		}
		f := m.Type // with the receiver first
		if f.NumIn() != 4 || f.In(1) != contextType || f.In(2) != readerType || f.In(3).Kind() != reflect.String ||
			f.NumOut() != 2 || f.Out(1) != errorType {
			return false
		}
		rows, ok := f.Out(0).MethodByName("RowsAffected")
		return ok && rows.Type.NumIn() == 1 && rows.Type.NumOut() == 1 && rows.Type.Out(0).Kind() == reflect.Int64
	}()
	shapes.Store(t, ok)
	return ok
}

// getter returns the result type of t's method name, which takes nothing
// and returns a pointer.
func getter(t reflect.Type, name string) (reflect.Type, bool) {
	m, ok := t.MethodByName(name)
	if !ok || m.Type.NumIn() != 1 || m.Type.NumOut() != 1 || m.Type.Out(0).Kind() != reflect.Pointer {
		return nil, false
	}
	return m.Type.Out(0), true
}

// ErrNoCopy is what a COPY on a connection that cannot run one returns.
var ErrNoCopy = errors.New("pgxcopy: the connection cannot run a COPY")
