// Command devoidc runs the development OpenID Connect provider on its own:
//
//	go run ./tools/devoidc/cmd/devoidc -addr 127.0.0.1:5556 -client-id pressroom -client-secret dev-secret
//
// and prints the issuer URL to use as OIDC_ISSUER_URL.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"pressroom.dev/tools/devoidc"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5556", "listen address")
	issuer := flag.String("issuer", "", "issuer URL when reached through another name (default http://<addr>)")
	id := flag.String("client-id", "", "the only client id accepted (empty: any)")
	secret := flag.String("client-secret", "", "that client's secret")
	flag.Parse()
	if *id != "" && *secret == "" {
		fmt.Fprintln(os.Stderr, "devoidc: -client-secret is required with -client-id")
		os.Exit(2)
	}
	p, err := devoidc.New(devoidc.Options{ClientID: *id, ClientSecret: *secret, Issuer: *issuer})
	if err == nil {
		err = p.Start(*addr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("devoidc issuer:", p.Issuer())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	_ = p.Close()
}
