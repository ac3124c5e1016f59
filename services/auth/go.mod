module pressroom.dev/services/auth

go 1.26.0

require (
	pressroom.dev/kit v0.0.0
	pressroom.dev/proto v0.0.0
)

require github.com/prometheus/client_golang v1.23.2 // indirect

require (
	connectrpc.com/connect v1.21.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/coreos/go-oidc/v3 v3.17.0 // indirect
	github.com/dgryski/go-rendezvous v0.0.0-20200823014737-9f7001d12a5f // indirect
	github.com/go-redis/redis_rate/v10 v10.0.1 // indirect
	github.com/golang-jwt/jwt/v5 v5.3.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0 // indirect
	github.com/redis/go-redis/v9 v9.17.3 // indirect
	golang.org/x/oauth2 v0.34.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	pressroom.dev/tools v0.0.0
)

replace (
	pressroom.dev/kit => ../kit
	pressroom.dev/proto => ../../proto
)

replace pressroom.dev/tools => ../../tools
