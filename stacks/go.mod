module pressroom.dev/stacks

go 1.26
