module pressroom.dev/proto

go 1.26
