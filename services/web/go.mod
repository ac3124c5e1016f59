module pressroom.dev/services/web

go 1.26

require (
	pressroom.dev/kit v0.0.0
	pressroom.dev/proto v0.0.0
)

replace (
	pressroom.dev/kit => ../kit
	pressroom.dev/proto => ../../proto
)
