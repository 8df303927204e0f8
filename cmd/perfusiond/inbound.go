package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"perfusion/hl7/fhir"
	"perfusion/hl7/inbound"
	v2 "perfusion/hl7/v2"
	"perfusion/server"
	"perfusion/store"
)

// Environment variables of the inbound HL7 v2 listener's flags.
const (
	envInboundListen      = "PERFUSION_HL7_INBOUND_LISTEN"
	envInboundAllow       = "PERFUSION_HL7_INBOUND_ALLOW"
	envInboundRooms       = "PERFUSION_HL7_INBOUND_ROOMS"
	envInboundTLSCert     = "PERFUSION_HL7_INBOUND_TLS_CERT"
	envInboundTLSKey      = "PERFUSION_HL7_INBOUND_TLS_KEY"
	envInboundTLSClientCA = "PERFUSION_HL7_INBOUND_TLS_CLIENT_CA"
	envInboundPlaintext   = "PERFUSION_HL7_INBOUND_ALLOW_PLAINTEXT"
	envInboundAuthority   = "PERFUSION_HL7_INBOUND_DEFAULT_AUTHORITY"
	envInboundAuthorities = "PERFUSION_HL7_INBOUND_AUTHORITIES"
	envInboundProcessing  = "PERFUSION_HL7_INBOUND_PROCESSING_IDS"
	envInboundMaxBytes    = "PERFUSION_HL7_INBOUND_MAX_BYTES"
	envInboundIdle        = "PERFUSION_HL7_INBOUND_IDLE_TIMEOUT"
	envInboundMaxConns    = "PERFUSION_HL7_INBOUND_MAX_CONNECTIONS"
	envFHIRLookupURL      = "PERFUSION_FHIR_LOOKUP_URL"
)

// inboundConfig is the inbound HL7 v2 listener (hl7/inbound): off unless
// --hl7-inbound-listen is given.
type inboundConfig struct {
	listen                      string
	allow, rooms                string
	tlsCert, tlsKey, tlsCA      string
	allowPlaintext              bool
	defaultAuthority            string
	authorities, processingIDs  string
	maxBytes, maxConns          int
	idle                        time.Duration
	parsedAllow                 *inbound.Allowlist
	parsedRooms                 map[string][]string
	grpcCert, grpcKey, grpcCA   string // the gRPC listener's, the defaults
	useGRPCCert, useGRPCCA      bool
	parsedAuthorities, procsIDs []string
	lookupURL                   string // --fhir-lookup-url
}

func inboundFlags(fs *flag.FlagSet, env envFlags) *inboundConfig {
	c := &inboundConfig{}
	fs.StringVar(&c.listen, "hl7-inbound-listen", "", "address of the inbound HL7 v2 listener (MLLP: ADT and SIU from the interface engine), e.g. :2575; empty: off (env "+envInboundListen+")")
	fs.StringVar(&c.allow, "hl7-inbound-allow", "", "who may send, comma-separated: NAME=CIDR, NAME=IP, IP, or cn:NAME for a client certificate; required with --hl7-inbound-listen (env "+envInboundAllow+")")
	fs.StringVar(&c.rooms, "hl7-inbound-rooms", "", "the sites and rooms whose OR schedule is kept: SITE:ROOM,ROOM;SITE:ROOM… (AIL-3: PL-4 the site, PL-2 else PL-1 the room); ADT changes cases of these sites only; required with --hl7-inbound-listen (env "+envInboundRooms+")")
	fs.StringVar(&c.tlsCert, "hl7-inbound-tls-cert", "", "TLS certificate of the inbound listener (PEM); default --tls-cert (env "+envInboundTLSCert+")")
	fs.StringVar(&c.tlsKey, "hl7-inbound-tls-key", "", "TLS key of the inbound listener (PEM); default --tls-key (env "+envInboundTLSKey+")")
	fs.StringVar(&c.tlsCA, "hl7-inbound-tls-client-ca", "", "CA verifying the senders' client certificates (then required of every sender); default --tls-client-ca (env "+envInboundTLSClientCA+")")
	fs.BoolVar(&c.allowPlaintext, "hl7-inbound-allow-plaintext", false, "allow MLLP without TLS on a non-loopback address (a hospital network segment where the engine cannot do TLS) (env "+envInboundPlaintext+")")
	fs.StringVar(&c.defaultAuthority, "hl7-inbound-default-authority", "", "assigning authority of a patient identifier that names none (PID-3.4 empty); empty refuses such identifiers (env "+envInboundAuthority+")")
	fs.StringVar(&c.authorities, "hl7-inbound-authorities", "", "assigning authorities whose MRNs (PID-3 type MR) are taken, in order of preference; empty: the first MR (env "+envInboundAuthorities+")")
	fs.StringVar(&c.processingIDs, "hl7-inbound-processing-ids", "P", "MSH-11 processing ids accepted, comma-separated (env "+envInboundProcessing+")")
	fs.IntVar(&c.maxBytes, "hl7-inbound-max-bytes", inbound.DefaultMaxMessageBytes, "largest inbound message; a larger frame closes the connection (env "+envInboundMaxBytes+")")
	fs.DurationVar(&c.idle, "hl7-inbound-idle-timeout", time.Hour, "close an inbound connection idle this long; 0: never (env "+envInboundIdle+")")
	fs.IntVar(&c.maxConns, "hl7-inbound-max-connections", 64, "inbound connections served at once (env "+envInboundMaxConns+")")
	fs.StringVar(&c.lookupURL, "fhir-lookup-url", "", "FHIR R4 base URL the tablet's patient search asks (CaseService.LookupPatient: Patient and Encounter by MRN); default --fhir-base-url; the MRN systems, encounter system and bearer token are the --fhir-* ones (env "+envFHIRLookupURL+")")
	env["fhir-lookup-url"] = envFHIRLookupURL
	for k, v := range map[string]string{"hl7-inbound-listen": envInboundListen, "hl7-inbound-allow": envInboundAllow, "hl7-inbound-rooms": envInboundRooms,
		"hl7-inbound-tls-cert": envInboundTLSCert, "hl7-inbound-tls-key": envInboundTLSKey, "hl7-inbound-tls-client-ca": envInboundTLSClientCA,
		"hl7-inbound-allow-plaintext": envInboundPlaintext, "hl7-inbound-default-authority": envInboundAuthority,
		"hl7-inbound-authorities": envInboundAuthorities, "hl7-inbound-processing-ids": envInboundProcessing,
		"hl7-inbound-max-bytes": envInboundMaxBytes, "hl7-inbound-idle-timeout": envInboundIdle, "hl7-inbound-max-connections": envInboundMaxConns} {
		env[k] = v
	}
	return c
}

// parseRooms reads SITE:ROOM,ROOM;SITE:ROOM.
func parseRooms(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for part := range strings.SplitSeq(s, ";") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		site, rooms, ok := strings.Cut(part, ":")
		site = strings.TrimSpace(site)
		if !ok || site == "" || site == "*" {
			return nil, usageErrorf("--hl7-inbound-rooms: want SITE:ROOM,ROOM;SITE:ROOM (%q)", part)
		}
		for _, r := range splitList(rooms) {
			if !slices.Contains(out[site], r) {
				out[site] = append(out[site], r)
			}
		}
		if len(out[site]) == 0 {
			return nil, usageErrorf("--hl7-inbound-rooms: site %s names no room", site)
		}
	}
	if len(out) == 0 {
		return nil, usageErrorf("--hl7-inbound-listen needs --hl7-inbound-rooms: the sites and rooms whose schedule this server keeps")
	}
	return out, nil
}

// check validates the flags; auth gives the gRPC TLS files the listener
// defaults to.
func (c *inboundConfig) check(auth *authConfig) error {
	if c.listen == "" {
		for name, v := range map[string]string{"--hl7-inbound-allow": c.allow, "--hl7-inbound-rooms": c.rooms, "--hl7-inbound-tls-cert": c.tlsCert} {
			if v != "" {
				return usageErrorf("%s needs --hl7-inbound-listen", name)
			}
		}
		return nil
	}
	var err error
	if c.allow == "" {
		return usageErrorf("--hl7-inbound-listen needs --hl7-inbound-allow: the addresses, networks or certificate names (cn:NAME) that may send")
	}
	if c.parsedAllow, err = inbound.ParseAllowlist(c.allow); err != nil {
		return usageErrorf("--hl7-inbound-allow: %v", err)
	}
	if c.parsedRooms, err = parseRooms(c.rooms); err != nil {
		return err
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return usageErrorf("--hl7-inbound-tls-cert and --hl7-inbound-tls-key go together")
	}
	if c.tlsCert == "" && auth.tlsCert != "" {
		c.tlsCert, c.tlsKey, c.useGRPCCert = auth.tlsCert, auth.tlsKey, true
	}
	if c.tlsCA == "" && auth.tlsClientCA != "" && c.tlsCert != "" {
		c.tlsCA, c.useGRPCCA = auth.tlsClientCA, true
	}
	if c.tlsCA != "" && c.tlsCert == "" {
		return usageErrorf("--hl7-inbound-tls-client-ca needs a certificate (--hl7-inbound-tls-cert or --tls-cert)")
	}
	if c.parsedAllow.NeedsCertificates() && c.tlsCA == "" {
		return usageErrorf("--hl7-inbound-allow names certificates (cn:…): give --hl7-inbound-tls-client-ca (or --tls-client-ca)")
	}
	if c.tlsCert == "" && !c.allowPlaintext && !listensOnLoopback(c.listen) {
		return usageErrorf("refusing plaintext MLLP on %s: give --hl7-inbound-tls-cert and --hl7-inbound-tls-key (or --tls-cert), or --hl7-inbound-allow-plaintext on a closed network segment", c.listen)
	}
	if c.maxBytes <= 0 || c.maxBytes > 64<<20 || c.maxConns <= 0 || c.idle < 0 {
		return usageErrorf("--hl7-inbound-max-bytes must be 1 to 64 MiB, --hl7-inbound-max-connections positive, --hl7-inbound-idle-timeout not negative")
	}
	c.parsedAuthorities, c.procsIDs = splitList(c.authorities), splitList(c.processingIDs)
	if len(c.procsIDs) == 0 {
		return usageErrorf("--hl7-inbound-processing-ids: give at least one (P for production)")
	}
	return nil
}

// lookup returns the patient search of CaseService.LookupPatient, nil
// when no FHIR server is configured.
func (c *inboundConfig) lookup(d *deliveryConfig) (server.PatientLookup, error) {
	base := c.lookupURL
	if base == "" {
		base = d.fhirBaseURL
	}
	if base == "" {
		return nil, nil
	}
	l, err := fhir.NewLookup(fhir.LookupConfig{BaseURL: base, MRNSystems: d.parsedMRNSystems, EncounterSystem: d.encounterSystem, BearerTokenFile: d.tokenFile})
	if err != nil {
		return nil, usageErrorf("--fhir-lookup-url: %v", err)
	}
	return l, nil
}

// start builds the handler and starts the listener; it returns the
// handler (for replays over gRPC) and the function that stops the
// listener, letting a message being handled finish within timeout. With
// no --hl7-inbound-listen it starts nothing.
func (c *inboundConfig) start(st *store.Store, d *deliveryConfig, timeout time.Duration, log *slog.Logger, onListen func(addr string)) (*inbound.Handler, func(), error) {
	if c.listen == "" {
		return nil, func() {}, nil
	}
	h, err := inbound.NewHandler(inbound.Config{Store: st, Rooms: c.parsedRooms,
		Application: v2.HD{NamespaceID: d.sendingApp}, Facility: v2.HD{NamespaceID: d.sendingFac}, Location: d.location,
		DefaultAuthority: c.defaultAuthority, Authorities: c.parsedAuthorities, MRNSystems: d.parsedMRNSystems, ProcessingIDs: c.procsIDs, MaxMessageBytes: c.maxBytes, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	var tlsCfg *tls.Config
	if c.tlsCert != "" {
		if tlsCfg, err = server.TLSConfig(c.tlsCert, c.tlsKey, c.tlsCA); err != nil {
			return nil, nil, fmt.Errorf("hl7 inbound: %w", err)
		}
	} else if !listensOnLoopback(c.listen) {
		log.Warn("!!! HL7 INBOUND IN PLAINTEXT ON A NON-LOOPBACK ADDRESS (--hl7-inbound-allow-plaintext): patient data crosses the network unencrypted !!!", "addr", c.listen)
	}
	l, err := inbound.Listen(inbound.ListenerConfig{Addr: c.listen, TLS: tlsCfg, Allow: c.parsedAllow, MaxMessageBytes: c.maxBytes,
		IdleTimeout: c.idle, MaxConnections: c.maxConns, Logger: log}, h)
	if err != nil {
		return nil, nil, err
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := l.Serve(); err != nil {
			log.Error("hl7 inbound listener stopped", "err", err.Error())
		}
	}()
	sites := make([]string, 0, len(c.parsedRooms))
	for s := range c.parsedRooms {
		sites = append(sites, s)
	}
	slices.Sort(sites)
	log.Info("hl7 inbound listening", "addr", l.Addr().String(), "tls", tlsCfg != nil, "client_certificates", c.tlsCA != "", "sites", strings.Join(sites, ","))
	if onListen != nil {
		onListen(l.Addr().String())
	}
	return h, func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		l.Shutdown(ctx)
		<-served
	}, nil
}
