// Package e2e tests the charting tablet in a real headless Chromium
// (Debian's /usr/bin/chromium, driven with chromedp) against a real
// perfusiond built from source, with pumpsim streaming a case into it.
//
// Two configurations are exercised: the embedded store with the
// development sign-in (the README's quick start), and PostgreSQL with an
// OpenID Connect provider — a small one written in the tests (discovery,
// an authorize endpoint that approves by itself and honours max_age and
// prompt=login, a token endpoint that checks PKCE S256, a JWKS) — whose
// access tokens perfusiond verifies through --jwks-url.
//
// What the tablet wrote is always checked through a real gRPC client, not
// only in the page. The tests skip, naming themselves, when chromium is
// missing on a developer machine and fail in CI (CI set). Run
//
//	go test ./clients/tablet/e2e -run . -v
//	go test ./clients/tablet/e2e -run TestScreenshots -update-screenshots
//
// the second to rewrite docs/tablet/*.png; the figures of the README
// (time to first trend, drawing 4 h × 10 channels, transfer size) are
// logged by TestFigures.
package e2e
