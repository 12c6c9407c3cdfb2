// Package txscope lets the backends of one Controller operation share one
// underlying transaction.
//
// The Controller begins a transaction on several participants (identity graph,
// profile store, audience engine, suppression list) for every collected message and
// every right, and commits them in turn. When those participants are views of one
// database, each right can commit in a single database commit instead of one per
// participant: the Controller puts a Scope in the context it passes to every Begin
// of one operation, and an adapter keeps its shared database transaction in the
// Scope, under a key of its own.
//
// The Controller begins every participant of an operation before it commits any of
// them, so an adapter can count the participants that joined and commit the
// database transaction when the last one commits; a Rollback before that rolls it
// back for all. Opening scopes costs an allocation, so the Controller opens them
// only when one of its backends implements Aware. Backends that do not care
// ignore the package.
package txscope
