module pressroom.dev/kit

go 1.26
