//go:build !devauth

package main

// devHeaderAuthBuilt: an ordinary build has no --dev-header-auth switch at
// all, so no setting of a production deployment can turn it on. Load and
// crash tests build perfusiond with -tags devauth.
const devHeaderAuthBuilt = false
