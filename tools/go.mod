module pressroom.dev/tools

go 1.26
