module pressroom.dev/infra

go 1.26
