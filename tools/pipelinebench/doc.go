// Package pipelinebench measures the event path publish → notification with
// the article and notification services as black boxes: it builds their
// binaries, runs them as child processes against real Postgres and NATS
// JetStream, publishes over Connect and times the e-mail request that
// notification sends to a local recording server standing in for Resend.
// Everything lives in its tests (`make bench`, `make test`).
package pipelinebench
