// Command referrers-registry serves go-containerregistry's in-memory OCI registry
// (pkg/registry) with its referrers API enabled, for holdca's tests: the reference
// registry (distribution v3.0.0) has no referrers API.
//
//	referrers-registry -addr 127.0.0.1:0   # prints "listening on 127.0.0.1:PORT"
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println("referrers-registry (go-containerregistry v0.21.5)")
		return
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", listener.Addr())
	os.Stdout.Sync()
	handler := registry.New(
		registry.WithReferrersSupport(true),
		registry.Logger(log.New(os.Stderr, "", log.LstdFlags)),
	)
	log.Fatal(http.Serve(listener, handler))
}
