package connectkit

import (
	"connectrpc.com/connect"

	"pressroom.dev/kit/telemetry"
	"pressroom.dev/kit/token"
)

// CompressMinBytes: smaller responses go uncompressed. Between services on
// the cluster network, gzipping a small message costs more CPU on both ends
// than its bytes cost to send; long article bodies and big lists still gain.
const CompressMinBytes = 8 << 10

// HandlerOptions are what every pressroom Connect handler uses: tracing,
// bearer-token authentication (anonymous callers only for the procedures
// listed), and compression only for responses of CompressMinBytes or more.
func HandlerOptions(v *token.Verifier, anonymous ...string) (connect.HandlerOption, error) {
	otelIC, err := telemetry.ConnectInterceptor()
	if err != nil {
		return nil, err
	}
	return connect.WithHandlerOptions(
		connect.WithInterceptors(otelIC, AuthInterceptor(v, AllowAnonymous(anonymous...))),
		connect.WithCompressMinBytes(CompressMinBytes),
	), nil
}
