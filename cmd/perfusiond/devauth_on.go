//go:build devauth

package main

// devHeaderAuthBuilt: this is a test build (go build -tags devauth), which
// has the --dev-header-auth switch for load tests and crash tests.
const devHeaderAuthBuilt = true
