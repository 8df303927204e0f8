package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"perfusion/export"
	"perfusion/hl7/fhir"
	"perfusion/hl7/mllp"
	v2 "perfusion/hl7/v2"
	"perfusion/store"
)

// Environment variables of the delivery flags.
const (
	envMLLPAddr         = "PERFUSION_HL7_MLLP_ADDR"
	envHL7SendingApp    = "PERFUSION_HL7_SENDING_APPLICATION"
	envHL7SendingFac    = "PERFUSION_HL7_SENDING_FACILITY"
	envHL7ReceivingApp  = "PERFUSION_HL7_RECEIVING_APPLICATION"
	envHL7ReceivingFac  = "PERFUSION_HL7_RECEIVING_FACILITY"
	envHL7AckTimeout    = "PERFUSION_HL7_ACK_TIMEOUT"
	envHL7TimeZone      = "PERFUSION_HL7_TIME_ZONE"
	envFHIRBaseURL      = "PERFUSION_FHIR_BASE_URL"
	envFHIRMRNSystems   = "PERFUSION_FHIR_MRN_SYSTEMS"
	envFHIREncounterSys = "PERFUSION_FHIR_ENCOUNTER_SYSTEM"
	envFHIRStaffSys     = "PERFUSION_FHIR_STAFF_SYSTEM"
	envFHIRDeviceSys    = "PERFUSION_FHIR_DEVICE_SYSTEM"
	envFHIRTokenFile    = "PERFUSION_FHIR_BEARER_TOKEN_FILE"
	envDeliveryPoll     = "PERFUSION_DELIVERY_POLL_INTERVAL"
	envDeliveryLease    = "PERFUSION_DELIVERY_LEASE"
	envDeliverDocument  = "PERFUSION_DELIVER_DOCUMENT"
)

// deliveryConfig is where signed records are delivered.
type deliveryConfig struct {
	mllpAddr                     string
	sendingApp, sendingFac       string
	receivingApp, receivingFac   string
	ackTimeout                   time.Duration
	timeZone                     string
	fhirBaseURL                  string
	mrnSystems                   string
	encounterSystem, staffSystem string
	deviceSystem, tokenFile      string
	pollInterval, lease          time.Duration
	location                     *time.Location
	parsedMRNSystems             map[string]string
	document                     bool
}

func (a *app) deliveryFlags(fs interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	BoolVar(*bool, string, bool, string)
}, env envFlags) *deliveryConfig {
	d := &deliveryConfig{}
	fs.BoolVar(&d.document, "deliver-document", true, "also deliver the rendered record (PDF): MDM^T02/T10 after each ORU, a DocumentReference in each FHIR transaction (env "+envDeliverDocument+")")
	env["deliver-document"] = envDeliverDocument
	fs.StringVar(&d.mllpAddr, "hl7-mllp-addr", "", "host:port of the HL7 v2 interface engine; signed cases are sent there as ORU^R01 over MLLP (env "+envMLLPAddr+")")
	fs.StringVar(&d.sendingApp, "hl7-sending-application", "PERFUSION", "MSH-3 (env "+envHL7SendingApp+")")
	fs.StringVar(&d.sendingFac, "hl7-sending-facility", "", "MSH-4 (env "+envHL7SendingFac+")")
	fs.StringVar(&d.receivingApp, "hl7-receiving-application", "", "MSH-5 (env "+envHL7ReceivingApp+")")
	fs.StringVar(&d.receivingFac, "hl7-receiving-facility", "", "MSH-6 (env "+envHL7ReceivingFac+")")
	fs.DurationVar(&d.ackTimeout, "hl7-ack-timeout", 30*time.Second, "how long to wait for an ACK before the message is retried (env "+envHL7AckTimeout+")")
	fs.StringVar(&d.timeZone, "hl7-time-zone", "UTC", "IANA time zone HL7 times are written in, with their offset (env "+envHL7TimeZone+")")
	fs.StringVar(&d.fhirBaseURL, "fhir-base-url", "", "FHIR R4 server base URL; signed cases are POSTed there as transaction Bundles (env "+envFHIRBaseURL+")")
	fs.StringVar(&d.mrnSystems, "fhir-mrn-systems", "", "MRN identifier systems by assigning authority: AUTH=uri[,AUTH=uri…] (env "+envFHIRMRNSystems+")")
	fs.StringVar(&d.encounterSystem, "fhir-encounter-system", "", "identifier system of the EHR's encounter numbers (env "+envFHIREncounterSys+")")
	fs.StringVar(&d.staffSystem, "fhir-staff-system", "", "identifier system of staff ids; required for FHIR (env "+envFHIRStaffSys+")")
	fs.StringVar(&d.deviceSystem, "fhir-device-system", fhir.DefaultDeviceSystem, "identifier system of device source ids, for the Devices of exported trends (env "+envFHIRDeviceSys+")")
	fs.StringVar(&d.tokenFile, "fhir-bearer-token-file", "", "file holding an OAuth bearer token for the FHIR server, read again on every attempt (env "+envFHIRTokenFile+")")
	fs.DurationVar(&d.pollInterval, "delivery-poll-interval", 2*time.Second, "how often an idle delivery loop (one per destination) looks for due deliveries (env "+envDeliveryPoll+")")
	fs.DurationVar(&d.lease, "delivery-lease", 2*time.Minute, "how long a claimed delivery is held before another server may take it (env "+envDeliveryLease+")")
	env["hl7-mllp-addr"], env["hl7-sending-application"], env["hl7-sending-facility"] = envMLLPAddr, envHL7SendingApp, envHL7SendingFac
	env["hl7-receiving-application"], env["hl7-receiving-facility"], env["hl7-ack-timeout"] = envHL7ReceivingApp, envHL7ReceivingFac, envHL7AckTimeout
	env["hl7-time-zone"], env["fhir-base-url"], env["fhir-mrn-systems"] = envHL7TimeZone, envFHIRBaseURL, envFHIRMRNSystems
	env["fhir-encounter-system"], env["fhir-staff-system"], env["fhir-device-system"] = envFHIREncounterSys, envFHIRStaffSys, envFHIRDeviceSys
	env["delivery-poll-interval"], env["delivery-lease"], env["fhir-bearer-token-file"] = envDeliveryPoll, envDeliveryLease, envFHIRTokenFile
	return d
}

// check validates the flags after parsing.
func (d *deliveryConfig) check() error {
	loc, err := time.LoadLocation(d.timeZone)
	if err != nil {
		return usageErrorf("--hl7-time-zone %q: not a known time zone", d.timeZone)
	}
	d.location = loc
	if d.ackTimeout <= 0 || d.pollInterval <= 0 || d.lease <= 0 {
		return usageErrorf("--hl7-ack-timeout, --delivery-poll-interval and --delivery-lease must be positive")
	}
	// A delivery waits for one ACK, or two with the document (ORU, then
	// MDM); the lease must cover twice that, or a delivery in flight is
	// taken by another server.
	acks := time.Duration(1)
	if d.document && d.mllpAddr != "" {
		acks = 2
	}
	if d.lease < 2*acks*d.ackTimeout {
		if acks == 2 {
			return usageErrorf("--delivery-lease must be at least four times --hl7-ack-timeout when documents are delivered (ORU and MDM each wait for an ACK), or deliveries in flight are taken by another server")
		}
		return usageErrorf("--delivery-lease must be at least twice --hl7-ack-timeout, or deliveries in flight are taken by another server")
	}
	if d.sendingApp == "" {
		return usageErrorf("--hl7-sending-application is required")
	}
	d.parsedMRNSystems = map[string]string{}
	for _, kv := range strings.Split(d.mrnSystems, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		auth, uri, ok := strings.Cut(kv, "=")
		if !ok || auth == "" || uri == "" {
			return usageErrorf("--fhir-mrn-systems: want AUTH=uri pairs separated by commas")
		}
		d.parsedMRNSystems[auth] = uri
	}
	if d.fhirBaseURL != "" {
		u, err := url.Parse(d.fhirBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageErrorf("--fhir-base-url: want an http or https URL")
		}
		if d.staffSystem == "" {
			return usageErrorf("--fhir-staff-system is required with --fhir-base-url")
		}
	}
	return nil
}

// destinations lists the configured destinations.
func (d *deliveryConfig) destinations() []store.Destination {
	var out []store.Destination
	if d.mllpAddr != "" {
		out = append(out, store.DestinationMLLP)
	}
	if d.fhirBaseURL != "" {
		out = append(out, store.DestinationFHIR)
	}
	return out
}

// outbox is the store's outbox setting: nil when nothing is configured.
func (d *deliveryConfig) outbox() *store.OutboxConfig {
	dests := d.destinations()
	if len(dests) == 0 {
		return nil
	}
	return &store.OutboxConfig{Destinations: dests, MessageID: export.MessageID}
}

// renderer renders exports for previews and deliveries, from st: the
// record's catalogue and metric thresholds, the ones review queries use.
func (d *deliveryConfig) renderer(st *store.Store) *export.Renderer {
	h := export.HL7Config{SendingApplication: v2.HD{NamespaceID: d.sendingApp}, SendingFacility: v2.HD{NamespaceID: d.sendingFac},
		ReceivingApplication: v2.HD{NamespaceID: d.receivingApp}, ReceivingFacility: v2.HD{NamespaceID: d.receivingFac},
		Location: d.location}
	f := fhir.Options{MRNSystems: d.parsedMRNSystems, EncounterSystem: d.encounterSystem, StaffSystem: d.staffSystem, DeviceSystem: d.deviceSystem}
	return export.RendererFor(st, h, f).WithDocuments(d.document)
}

// startWorker starts the delivery worker when a destination is configured
// (one sending loop per destination, so a slow receiver delays no other)
// and returns the function that stops it and waits for it.
func (d *deliveryConfig) startWorker(ctx context.Context, db store.Backend, r *export.Renderer, obs export.Observer, log *slog.Logger) (func(), error) {
	dests := d.destinations()
	if len(dests) == 0 {
		log.Info("delivery: no destination configured; signed cases are not sent anywhere")
		return func() {}, nil
	}
	o, err := store.OutboxOf(db)
	if err != nil {
		return nil, err
	}
	transports := map[store.Destination]export.Transport{}
	var closers []func() error
	if d.mllpAddr != "" {
		t, err := export.NewMLLPTransport(mllp.SenderConfig{Addr: d.mllpAddr, AckTimeout: d.ackTimeout, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("delivery: %w", err)
		}
		transports[store.DestinationMLLP] = t
		closers = append(closers, t.Close)
	}
	if d.fhirBaseURL != "" {
		t, err := export.NewFHIRTransport(d.fhirBaseURL, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("delivery: %w", err)
		}
		if d.tokenFile != "" {
			t.UseBearerTokenFile(d.tokenFile)
		}
		transports[store.DestinationFHIR] = t
	}
	w, err := export.NewWorker(export.WorkerConfig{Outbox: o, Renderer: r, Transports: transports, Lease: d.lease, Observer: obs,
		PollInterval: d.pollInterval, Logger: log})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(wctx) })
	log.Info("delivery: worker started", "destinations", fmt.Sprint(dests))
	return func() {
		cancel()
		wg.Wait()
		for _, c := range closers {
			_ = c()
		}
	}, nil
}
