// Package pgxcopy finds, under a database/sql driver connection, pgx's
// COPY FROM: sqlstore sends large runs of rows with it rather than as a
// statement's parameters, which pgx copies into buffers it regrows for
// every statement.
//
// It finds it by the connection's methods, with reflect, not by pgx's types:
// a module importing sqlstore must not download a driver it does not use
// (see the README's Dependencies). The methods are those of pgx v5's
// database/sql connection (github.com/jackc/pgx/v5/stdlib.Conn):
// Conn() *pgx.Conn, whose PgConn() *pgconn.PgConn has
// CopyFrom(ctx context.Context, r io.Reader, sql string) (pgconn.CommandTag, error),
// whose RowsAffected() int64 counts the rows copied. Any other connection,
// or one whose methods differ, has none, and its caller keeps its
// statements.
package pgxcopy
