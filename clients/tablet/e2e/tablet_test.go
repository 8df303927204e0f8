package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
)

// Tablet sizes: landscape 1280×800, and the smaller 1024×768.
const (
	wideW, wideH     = 1280, 800
	narrowW, narrowH = 1024, 768
)

// createCase creates a CPB case at MAIN over gRPC and returns its id, for
// scenarios that do not test the case form.
func createCase(t *testing.T, a *api, room string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := a.cases.CreateCase(ctx, &pb.CreateCaseRequest{CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_CPB,
		Site: "MAIN", Room: room, ScheduledStart: timestamppb.Now(),
		Details: &pb.CaseDetails{Patient: &pb.Patient{Mrn: "E2E" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10), MrnAssigningAuthority: "E2E",
			FamilyName: "Tablet", GivenName: "Test", BirthDate: "1960-04-02", HeightCm: 175, WeightKg: 80,
			BsaFormula: pb.BsaFormula_BSA_FORMULA_MOSTELLER}}})
	if err != nil {
		t.Fatalf("CreateCase: %v", err)
	}
	return resp.GetCase().GetCaseId()
}

// TestSignInCreateAndOpenCase: the development sign-in, the board, the
// case form with its computed BSA, and the new case opened — stored as
// entered (checked over gRPC).
func TestSignInCreateAndOpenCase(t *testing.T) {
	srv := startDev(t)
	witness := srv.client(t)
	a := openApp(t, srv, "tablet", wideW, wideH)
	a.signInDev("pat", "perfusionist")
	a.waitVisible(testid("board"))
	if !a.visibleWithin(testid("sign-out"), time.Second) {
		t.Fatal("no sign-out button once signed in")
	}

	cardsBefore := call[[]string](a.tab, `() => [...document.querySelectorAll("[data-testid=case-card]")].map(e => e.dataset.caseId)`)
	a.click(testid("new-case"))
	a.waitVisible(testid("case-form"))
	fields := a.fieldNames(testid("case-form"))
	t.Logf("case form fields: %v", fields)
	want := map[string]any{"mrn": "E2E000123", "family_name": "Tablet", "given_name": "Ada", "birth_date": "1958-11-30",
		"height_cm": "175", "weight_kg": "80", "bsa_formula": "mosteller", "kind": "cpb", "site": "MAIN", "room": "OR-7",
		"surgeon": "Dr Surgeon", "perfusionist": "pat", "anesthesiologist": "Dr Anaesthetist", "oxygenator": "Affinity Fusion",
		"prime_volume_ml": "1400", "encounter": "ENC-1"}
	use := map[string]any{}
	for k, v := range want {
		if slices.Contains(fields, k) {
			use[k] = v
		}
	}
	for _, required := range []string{"height_cm", "weight_kg", "bsa_formula", "kind", "room"} {
		if _, ok := use[required]; !ok {
			t.Errorf("the case form has no field %q (fields: %v)", required, fields)
		}
	}
	a.fill(testid("case-form"), use)
	// Mosteller: √(175 × 80 / 3600) = 1.97 m².
	a.waitJS(5*time.Second, "BSA 1.97 shown", `(document.querySelector("[data-testid=bsa]")?.textContent || "").includes("1.97")`)
	a.click(testid("case-submit"))

	// The form opens the new case, or puts it on the board.
	var id string
	eventually(t, defaultWait, "the new case opens or appears on the board", func() error {
		if v := a.attr(testid("case-view"), "data-case-id"); v != "" {
			id = v
			return nil
		}
		for _, c := range call[[]string](a.tab, `() => [...document.querySelectorAll("[data-testid=case-card]")].map(e => e.dataset.caseId)`) {
			if !slices.Contains(cardsBefore, c) {
				id = c
				return nil
			}
		}
		if e := a.errorText(); e != "" {
			return fmt.Errorf("error banner: %s", e)
		}
		return errNotYet
	})
	if a.attr(testid("case-view"), "data-case-id") == "" {
		a.openCase(id)
	}
	if s := a.caseState(); s != "open" {
		t.Fatalf("new case's view data-state %q, want open", s)
	}
	c := witness.getCase(t, id)
	p := c.GetDetails().GetPatient()
	if c.GetSite() != "MAIN" || c.GetRoom() != "OR-7" || c.GetKind() != pb.CaseKind_CASE_KIND_CPB ||
		p.GetHeightCm() != 175 || p.GetWeightKg() != 80 || p.GetBsaFormula() != pb.BsaFormula_BSA_FORMULA_MOSTELLER {
		t.Fatalf("stored case differs from the form: site %q room %q kind %v height %v weight %v formula %v",
			c.GetSite(), c.GetRoom(), c.GetKind(), p.GetHeightCm(), p.GetWeightKg(), p.GetBsaFormula())
	}
	if _, ok := use["mrn"]; ok && p.GetMrn() != "E2E000123" {
		t.Fatalf("stored MRN %q", p.GetMrn())
	}

	// Signing out returns to the sign-in screen.
	a.click(testid("sign-out"))
	a.waitVisible(testid("signin"))
}

// entryKinds is every quick entry and every other kind of entry, with
// values for the fields its dialog may have (only the fields present are
// filled), and what ListEntries must hold for it.
var entryKinds = []struct {
	trigger string
	values  map[string]any
	accept  func(kind string) bool
}{
	{"quick-heparin", map[string]any{"dose": 30000}, oneOf("drug:heparin", "event:HEPARIN_GIVEN")},
	{"quick-act", map[string]any{"value": 480}, func(k string) bool { return strings.HasPrefix(k, "lab:act") || k == "event:ACT_ADEQUATE" }},
	{"quick-bypass-on", nil, oneOf("event:BYPASS_ON")},
	{"quick-full-flow", nil, oneOf("event:FULL_FLOW")},
	{"quick-cooling", nil, oneOf("event:COOLING_START")},
	{"quick-xclamp-on", nil, oneOf("event:CROSS_CLAMP_ON")},
	{"quick-cardioplegia", map[string]any{"volume_ml": 1000, "temperature_c": 4, "solution": "del Nido", "route": "antegrade"}, oneOf("cardioplegia")},
	{"quick-arrest", nil, oneOf("event:CIRCULATORY_ARREST_START")},
	{"quick-rewarming", nil, oneOf("event:REWARMING_START")},
	{"quick-xclamp-off", nil, oneOf("event:CROSS_CLAMP_OFF")},
	{"quick-weaning", nil, oneOf("event:WEANING_START")},
	{"quick-bypass-off", nil, oneOf("event:BYPASS_OFF")},
	{"quick-protamine", map[string]any{"dose": 300}, oneOf("drug:protamine", "event:PROTAMINE_GIVEN")},
	{"add-drug", map[string]any{"drug": "phenylephrine", "dose": 100}, func(k string) bool { return strings.HasPrefix(k, "drug:") }},
	{"add-fluid", map[string]any{"name": "Plasma-Lyte A", "volume_ml": 500}, oneOf("fluid")},
	{"add-blood-product", map[string]any{"units": 1, "volume_ml": 280}, oneOf("blood_product")},
	{"add-lab", map[string]any{"ph": 7.38, "pco2": 41, "po2": 245, "hct": 27, "hb": 9.1, "k": 4.2, "analyte": "hct", "value": 27},
		func(k string) bool { return strings.HasPrefix(k, "lab:") }},
	{"add-checklist", map[string]any{firstRadios: "checked"}, oneOf("checklist")},
	{"add-note", map[string]any{"text": "Venous line kinked briefly, cleared."}, oneOf("note")},
	{"add-artifact", map[string]any{"channel": "pump_flow", "reason": "line flush"}, oneOf("artifact")},
	{"add-event", map[string]any{"type": strconv.Itoa(int(pb.EventType_EVENT_TYPE_SUCKERS_STOPPED)), "comment": "before protamine"}, oneOf("event:SUCKERS_STOPPED")},
}

func oneOf(kinds ...string) func(string) bool {
	return func(k string) bool { return slices.Contains(kinds, k) }
}

// TestEveryEntryKindOnce charts every quick entry and each other kind of
// entry on the tablet and finds each in ListEntries exactly once, of the
// kind charted, and nothing else.
func TestEveryEntryKindOnce(t *testing.T) {
	srv := startDev(t)
	witness := srv.client(t)
	id := createCase(t, witness, "OR-1")
	a := openApp(t, srv, "tablet", wideW, wideH)
	a.signInDev("pat", "perfusionist")
	a.openCase(id)

	byTrigger := map[string][]string{}
	var all []string
	for _, k := range entryKinds {
		ids := a.chart(k.trigger, k.values)
		if len(ids) == 0 {
			t.Fatalf("%s: no entry appeared", k.trigger)
		}
		byTrigger[k.trigger] = ids
		all = append(all, ids...)
	}
	a.waitOutbox(0, defaultWait)
	for _, e := range all {
		if s := a.entryStatus(e); s != "stored" {
			t.Errorf("entry %s shows data-status %q, want stored", e, s)
		}
	}

	stored := witness.entries(t, id, true)
	seen := map[string]int{}
	kinds := map[string]string{}
	for _, e := range stored {
		seen[e.GetEntryId()]++
		kinds[e.GetEntryId()] = kindOf(e)
	}
	for _, k := range entryKinds {
		for _, e := range byTrigger[k.trigger] {
			switch {
			case seen[e] != 1:
				t.Errorf("%s: entry %s is in ListEntries %d times, want once", k.trigger, e, seen[e])
			case !k.accept(kinds[e]):
				t.Errorf("%s: entry %s is stored as %s", k.trigger, e, kinds[e])
			}
		}
	}
	if len(stored) != len(all) {
		t.Errorf("ListEntries holds %d entries, the tablet charted %d", len(stored), len(all))
	}
	t.Logf("charted %d entries from %d triggers", len(all), len(entryKinds))
}

// TestCorrectionWithReason corrects a charted dose with a reason and voids
// a note: the server holds the correction superseding the original with
// the reason (and the void), and the page shows the superseded value
// struck through.
func TestCorrectionWithReason(t *testing.T) {
	srv := startDev(t)
	witness := srv.client(t)
	id := createCase(t, witness, "OR-2")
	a := openApp(t, srv, "tablet", wideW, wideH)
	a.signInDev("pat", "perfusionist")
	a.openCase(id)

	orig := a.chart("quick-heparin", map[string]any{"dose": 30000})[0]
	note := a.chart("add-note", map[string]any{"text": "charted on the wrong case"})[0]
	a.waitOutbox(0, defaultWait)

	const reason = "dose misread from the syringe label"
	a.click(entrySel(orig) + " " + testid("entry-correct"))
	a.waitVisible(testid("entry-dialog"))
	names := a.fieldNames(testid("entry-dialog"))
	t.Logf("correction dialog fields: %v", names)
	if !slices.Contains(names, "reason") {
		t.Fatalf("the correction dialog has no reason field: %v", names)
	}
	fix := map[string]any{"reason": reason}
	if slices.Contains(names, "dose") {
		fix["dose"] = 25000
	}
	a.fill(testid("entry-dialog"), fix)
	a.click(testid("entry-confirm"))
	a.waitDialogClosed("correction")
	a.waitJS(defaultWait, "the original shown as corrected", fmt.Sprintf(`document.querySelector(%q)?.dataset.status === "corrected"`, entrySel(orig)))

	a.click(entrySel(note) + " " + testid("entry-void"))
	if a.visibleWithin(testid("entry-dialog"), 2*time.Second) {
		if slices.Contains(a.fieldNames(testid("entry-dialog")), "reason") {
			a.fill(testid("entry-dialog"), map[string]any{"reason": "wrong case"})
		}
		a.click(testid("entry-confirm"))
		a.waitDialogClosed("void")
	}
	a.waitJS(defaultWait, "the note shown as voided", fmt.Sprintf(`document.querySelector(%q)?.dataset.status === "voided"`, entrySel(note)))
	a.waitOutbox(0, defaultWait)

	hist := witness.entries(t, id, true)
	var correction, void *pb.Entry
	for _, e := range hist {
		switch {
		case e.GetSupersedesEntryId() == orig:
			correction = e
		case e.GetSupersedesEntryId() == note:
			void = e
		}
	}
	if correction == nil || correction.GetCorrectionReason() != reason || correction.GetVoid() {
		t.Fatalf("no correction of %s with reason %q in the history: %v", orig, reason, correction)
	}
	if fix["dose"] != nil {
		if d := correction.GetDrug(); d != nil && d.GetDose() != 25000 {
			t.Fatalf("corrected dose %v, want 25000", d.GetDose())
		}
	}
	if void == nil || !void.GetVoid() || void.GetCorrectionReason() == "" {
		t.Fatalf("no void of %s with a reason: %v", note, void)
	}
	current := witness.entries(t, id, false)
	for _, e := range current {
		if e.GetEntryId() == orig || e.GetEntryId() == note {
			t.Fatalf("superseded entry %s still current", e.GetEntryId())
		}
	}
	// The superseded value stays on screen, struck through.
	a.waitJS(10*time.Second, "the superseded entry shown struck through",
		`[...document.querySelectorAll("[data-testid=timeline] del")].some(d => d.closest("[data-testid=entry]"))`)
}

// TestSecondBrowserSeesEntriesLive: two tablets (two browsers, two
// people) on one case; what one charts appears on the other without a
// reload, through WatchCase.
func TestSecondBrowserSeesEntriesLive(t *testing.T) {
	srv := startDev(t)
	witness := srv.client(t)
	id := createCase(t, witness, "OR-3")
	first := openApp(t, srv, "first", wideW, wideH)
	second := openApp(t, srv, "second", wideW, wideH)
	first.signInDev("pat", "perfusionist")
	second.signInDev("sam", "anesthesiologist")
	first.openCase(id)
	second.openCase(id)

	var charted []string
	for i, k := range []struct {
		trigger string
		values  map[string]any
	}{{"quick-bypass-on", nil}, {"add-note", map[string]any{"text": "seen on the other tablet"}}, {"quick-heparin", map[string]any{"dose": 32000}}} {
		start := time.Now()
		ids := first.chart(k.trigger, k.values)
		for _, e := range ids {
			second.waitJS(15*time.Second, fmt.Sprintf("entry %d (%s) on the second tablet", i, k.trigger), fmt.Sprintf(`!!document.querySelector(%q)`, entrySel(e)))
		}
		t.Logf("%s (%d entries) on the second tablet %s after the tap on the first", k.trigger, len(ids), time.Since(start).Round(time.Millisecond))
		charted = append(charted, ids...)
	}
	// And the other way round.
	back := second.chart("add-note", map[string]any{"text": "and back"})
	first.waitJS(15*time.Second, "the second tablet's note on the first", fmt.Sprintf(`!!document.querySelector(%q)`, entrySel(back[0])))
	charted = append(charted, back...)
	stored := witness.entries(t, id, false)
	if len(stored) != len(charted) {
		t.Fatalf("ListEntries holds %d entries, the tablets charted %d", len(stored), len(charted))
	}
	for _, e := range stored {
		if !slices.Contains(charted, e.GetEntryId()) {
			t.Fatalf("stored entry %s was not charted by the tablets", e.GetEntryId())
		}
	}
}

// TestOfflineOutbox: network off, 5 entries charted (pending in the
// outbox), the page reloaded, network back: exactly those 5 are stored,
// once each, under the ids the tablet made.
func TestOfflineOutbox(t *testing.T) {
	srv := startDev(t)
	witness := srv.client(t)
	id := createCase(t, witness, "OR-4")
	a := openApp(t, srv, "tablet", wideW, wideH)
	a.signInDev("pat", "perfusionist")
	a.openCase(id)
	online := a.chart("quick-bypass-on", nil)
	a.waitOutbox(0, defaultWait)

	a.setOffline(true)
	a.waitJS(10*time.Second, "net-state offline", `(document.querySelector("[data-testid=net-state]")?.textContent || "").trim() === "offline"`)
	var pending []string
	for i, k := range []struct {
		trigger string
		values  map[string]any
	}{{"add-note", map[string]any{"text": "offline note 1"}}, {"quick-full-flow", nil}, {"add-fluid", map[string]any{"name": "Plasma-Lyte A", "volume_ml": 250}},
		{"add-note", map[string]any{"text": "offline note 2"}}, {"quick-cooling", nil}} {
		ids := a.chart(k.trigger, k.values)
		if len(ids) != 1 {
			t.Fatalf("offline entry %d (%s) made %d entries", i, k.trigger, len(ids))
		}
		pending = append(pending, ids...)
	}
	a.waitOutbox(5, 5*time.Second)
	for _, e := range pending {
		if s := a.entryStatus(e); s != "pending" {
			t.Fatalf("offline entry %s shows %q, want pending", e, s)
		}
	}
	if n := len(witness.entries(t, id, true)); n != 1 {
		t.Fatalf("the server holds %d entries while the tablet is offline, want 1", n)
	}

	// Reload. With a service worker the page loads offline; without one
	// the page comes from the server while every API call still fails
	// (the server unreachable), which is what the outbox must survive.
	sw := eval[bool](a.tab, `!!(navigator.serviceWorker && navigator.serviceWorker.controller)`)
	if !sw {
		a.blockAPI(true)
		a.setOffline(false)
	}
	t.Logf("reload with service worker: %v", sw)
	a.reload()
	if !a.visibleWithin(caseView(id), 10*time.Second) {
		t.Logf("the reload did not return to the case view (URL %s)", eval[string](a.tab, `location.href`))
	}
	if a.visibleWithin(testid("outbox-count"), 5*time.Second) {
		a.waitOutbox(5, 10*time.Second)
	}
	for _, e := range pending {
		if a.count(entrySel(e)) > 0 && a.entryStatus(e) != "pending" {
			t.Fatalf("after reload entry %s shows %q, want pending", e, a.entryStatus(e))
		}
	}
	if n := len(witness.entries(t, id, true)); n != 1 {
		t.Fatalf("the server holds %d entries before the network is back, want 1", n)
	}

	if sw {
		a.setOffline(false)
	} else {
		a.blockAPI(false)
	}
	if !a.visibleWithin(caseView(id), 2*time.Second) {
		a.openCase(id)
	}
	a.waitOutbox(0, 60*time.Second)
	stored := witness.entries(t, id, true)
	count := map[string]int{}
	for _, e := range stored {
		count[e.GetEntryId()]++
	}
	if len(stored) != 1+len(pending) {
		t.Errorf("the server holds %d entries, want %d (1 online + 5 offline)", len(stored), 1+len(pending))
	}
	for _, e := range append(online, pending...) {
		if count[e] != 1 {
			t.Errorf("entry %s stored %d times, want once", e, count[e])
		}
	}
	for _, e := range pending {
		a.waitJS(10*time.Second, "entry "+e+" stored on screen", fmt.Sprintf(`document.querySelector(%q)?.dataset.status === "stored"`, entrySel(e)))
	}
}

// TestLiveTrendsAdvance: while pumpsim streams, every trend strip draws
// points and its newest drawn time advances; the device sources are
// listed as connected.
func TestLiveTrendsAdvance(t *testing.T) {
	srv := startDev(t)
	sim := srv.startPumpsim(t, "--speed", "120", "--duration", "4h")
	a := openApp(t, srv, "tablet", wideW, wideH)
	a.signInDev("pat", "perfusionist")
	a.openCase(sim.caseID)
	strips := []string{"trend-flows", "trend-pressures", "trend-temperatures", "trend-blood", "trend-do2i"}
	lastTime := func(strip string) int64 {
		v, _ := strconv.ParseInt(a.attr(testid(strip), "data-last-time"), 10, 64)
		return v
	}
	// Blood gases and DO2i start once the in-line monitor reads on bypass,
	// some simulated minutes in.
	for _, s := range strips {
		a.waitJS(2*time.Minute, s+" draws points", fmt.Sprintf(`+(document.querySelector(%q)?.dataset.points || 0) > 0`, testid(s)))
	}
	first := map[string]int64{}
	for _, s := range strips {
		first[s] = lastTime(s)
	}
	// pumpsim sends 120 simulated seconds per second: within seconds every
	// strip must have moved on.
	for _, s := range strips {
		eventually(t, defaultWait, s+" advances", func() error {
			if now := lastTime(s); now <= first[s] {
				return fmt.Errorf("data-last-time %d, was %d", now, first[s])
			}
			return nil
		})
	}
	for _, s := range strips {
		t.Logf("%s: %s points, last time advanced by %s", s, a.attr(testid(s), "data-points"), time.Duration(lastTime(s)-first[s])*time.Millisecond)
	}
	a.waitVisible(testid("sources"))
	a.waitJS(defaultWait, "a connected device source", `!!document.querySelector("[data-testid=source][data-state=connected]")`)
	t.Logf("sources: %d listed", a.count(testid("source")))
}

// signOff closes the open case and signs it on the page. freshAuth is
// called when the page asks for a fresh authentication (it signs in).
func signOff(t *testing.T, a *app, id string, freshAuth func()) {
	t.Helper()
	a.click(testid("close-case"))
	confirmIfAsked(a)
	a.waitJS(defaultWait, "case closed", fmt.Sprintf(`document.querySelector(%q)?.dataset.state === "closed"`, caseView(id)))
	a.click(testid("sign-case"))
	confirmIfAsked(a)
	freshAuth()
	a.waitJS(defaultWait, "case signed (error banner: "+a.errorText()+")", fmt.Sprintf(`document.querySelector(%q)?.dataset.state === "signed"`, caseView(id)))
	a.waitJS(defaultWait, "record verified", `(document.querySelector("[data-testid=verify-state]")?.textContent || "").trim().startsWith("verified")`)
}

// confirmIfAsked confirms an in-page dialog (the entry dialog's confirm)
// when one opens; window.confirm is accepted by the tab itself.
func confirmIfAsked(a *app) {
	a.t.Helper()
	if a.visibleWithin(testid("entry-dialog"), time.Second) {
		names := a.fieldNames(testid("entry-dialog"))
		fill := map[string]any{}
		for k, v := range map[string]any{"meaning": "authored", "signer_display_name": "P. Perfusionist", "name": "P. Perfusionist"} {
			if slices.Contains(names, k) {
				fill[k] = v
			}
		}
		if len(fill) > 0 {
			a.fill(testid("entry-dialog"), fill)
		}
		a.click(testid("entry-confirm"))
	}
}

// TestCloseAndSignDev closes and signs a case with the development
// sign-in: the server wants an authentication younger than 5 s to sign,
// so the tablet must get a fresh one first.
func TestCloseAndSignDev(t *testing.T) {
	srv := startDev(t, "--sign-auth-max-age", "5s")
	witness := srv.client(t)
	id := createCase(t, witness, "OR-5")
	a := openApp(t, srv, "tablet", wideW, wideH)
	a.signInDev("pat", "perfusionist")
	a.openCase(id)
	a.chart("quick-bypass-on", nil)
	a.chart("quick-bypass-off", nil)
	a.waitOutbox(0, defaultWait)
	time.Sleep(6 * time.Second) // the sign-in is now too old to sign with
	asked := false
	signOff(t, a, id, func() {
		asked = a.devSignInIfAsked("pat", "perfusionist", 10*time.Second, fmt.Sprintf(`document.querySelector(%q)?.dataset.state === "signed"`, caseView(id)))
	})
	if !asked {
		t.Log("the tablet signed without showing the sign-in form (fresh development sign-in done by itself)")
	}
	c := witness.getCase(t, id)
	if c.GetStatus() != pb.CaseStatus_CASE_STATUS_SIGNED || len(c.GetSignatures()) != 1 || c.GetSignatures()[0].GetSigner() != "pat" {
		t.Fatalf("case status %v, signatures %v", c.GetStatus(), c.GetSignatures())
	}
	verifyOK(t, witness, id)
}

func verifyOK(t *testing.T, a *api, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := a.record.VerifyRecord(ctx, &pb.VerifyRecordRequest{CaseId: id})
	if err != nil || !v.GetOk() {
		t.Fatalf("VerifyRecord: %v %v", err, v)
	}
}

// TestOIDCSignInCloseAndSign runs on PostgreSQL with an OpenID Connect
// provider: sign-in by authorization code with PKCE, charting with the
// provider's access token, and signing with a fresh authentication — the
// first sign-in is made to look 10 minutes old (older than the server's
// 5-minute signing window), so the tablet must ask the provider again with
// max_age=0/prompt=login, get a new auth_time and only then sign.
func TestOIDCSignInCloseAndSign(t *testing.T) {
	idp := newMockIDP(t, "perfusion-tablet", "perfusion", "oidc-pat", []server.Role{server.RolePerfusionist}, []string{"MAIN", "SIM"})
	srv := startOIDC(t, idp, "--sign-auth-max-age", "5m")
	witness := srv.client(t)
	id := createCase(t, witness, "OR-6")

	cfg := getJSON(t, srv.base+"/tablet/config.json")
	oidc, _ := cfg["oidc"].(map[string]any)
	if cfg["devSignIn"] != false || oidc == nil || oidc["issuer"] != idp.url || oidc["clientId"] != "perfusion-tablet" {
		t.Fatalf("config.json %v", cfg)
	}

	idp.setLoginSkew(10 * time.Minute)
	a := openApp(t, srv, "tablet", wideW, wideH)
	if a.visibleWithin(`input[name=subject]`, time.Second) {
		t.Fatal("the development sign-in is offered with an identity provider configured")
	}
	a.signInOIDC("oidc-pat")
	reqs, logins, exchanges, refused := idp.stats()
	if logins != 1 || exchanges != 1 || len(refused) > 0 {
		t.Fatalf("sign-in: %d fresh logins, %d exchanges, refused %v", logins, exchanges, refused)
	}
	if r := reqs[0]; r.Get("code_challenge_method") != "S256" || r.Get("redirect_uri") != srv.base+"/" {
		t.Fatalf("authorization request %v", r)
	}
	// Tokens live in sessionStorage, never in localStorage.
	if eval[bool](a.tab, `Object.values(localStorage).some(v => v.includes("eyJ"))`) ||
		!eval[bool](a.tab, `Object.values(sessionStorage).some(v => v.includes("eyJ"))`) {
		t.Fatalf("the access token is in localStorage, or not in sessionStorage")
	}
	a.openCase(id)
	entry := a.chart("add-note", map[string]any{"text": "charted with an OIDC token"})[0]
	a.waitOutbox(0, defaultWait)
	stored := witness.entries(t, id, false)
	if len(stored) != 1 || stored[0].GetEntryId() != entry || stored[0].GetAuthor() != "oidc-pat" {
		t.Fatalf("stored entries %v", stored)
	}

	idp.setLoginSkew(0)
	signOff(t, a, id, func() {})
	reqs, logins, _, refused = idp.stats()
	fresh := false
	for _, r := range reqs[1:] {
		if r.Get("max_age") == "0" || strings.Contains(r.Get("prompt"), "login") {
			fresh = true
			t.Logf("fresh authentication asked with max_age=%q prompt=%q scope=%q", r.Get("max_age"), r.Get("prompt"), r.Get("scope"))
		}
	}
	if !fresh || logins != 2 || len(refused) > 0 {
		t.Fatalf("signing: fresh authentication asked %v, %d fresh logins, refused %v; requests %v", fresh, logins, refused, reqs)
	}
	c := witness.getCase(t, id)
	if c.GetStatus() != pb.CaseStatus_CASE_STATUS_SIGNED || len(c.GetSignatures()) != 1 || c.GetSignatures()[0].GetSigner() != "oidc-pat" {
		t.Fatalf("case status %v, signatures %v", c.GetStatus(), c.GetSignatures())
	}
	verifyOK(t, witness, id)
}

// TestExpiredTokenKeepsOutbox: entries wait in the outbox (the server
// unreachable); a sign-out keeps them, and so does a sign-in whose token
// expires 2 s later (development sign-in with ttlSeconds 2): the tablet
// goes back to the sign-in screen saying so. Signed in again with the
// server reachable, the entries are sent, once each.
func TestExpiredTokenKeepsOutbox(t *testing.T) {
	srv := startDev(t, "--jwt-leeway", "1s")
	witness := srv.client(t)
	id := createCase(t, witness, "OR-8")
	a := openApp(t, srv, "tablet", wideW, wideH)
	a.signInDev("pat", "perfusionist")
	a.openCase(id)
	a.blockAPI(true)
	var pending []string
	pending = append(pending, a.chart("add-note", map[string]any{"text": "kept across sign-out and expiry 1"})...)
	pending = append(pending, a.chart("add-note", map[string]any{"text": "kept across sign-out and expiry 2"})...)
	a.waitOutbox(2, 5*time.Second)

	a.click(testid("sign-out"))
	a.waitVisible(testid("signin") + " input[name=subject]")
	if got := a.outboxCount(); got != "2" {
		t.Fatalf("after sign-out the outbox shows %q, want 2", got)
	}
	a.setDevSignIn(map[string]any{"ttlSeconds": 2})
	// Not waiting to see the session: on a slow machine it may be over
	// before a poll sees it. The notice below says it began and expired.
	a.submitDevSignIn("pat", "perfusionist")
	a.waitJS(15*time.Second, "back at the sign-in screen saying the 2 s sign-in expired",
		`!document.querySelector("[data-testid=whoami]") && (document.querySelector("[data-testid=signin] [role=status]")?.textContent || "").includes("expired")`)
	notice := a.text(testid("signin") + " [role=status]")
	t.Logf("sign-in screen after expiry says: %q", notice)
	if !strings.Contains(notice, "expired") {
		t.Errorf("the sign-in screen does not say the sign-in expired: %q", notice)
	}
	if got := a.outboxCount(); got != "2" {
		t.Fatalf("after expiry the outbox shows %q, want 2", got)
	}
	if n := len(witness.entries(t, id, true)); n != 0 {
		t.Fatalf("the server holds %d entries while it was unreachable", n)
	}

	a.blockAPI(false)
	a.setDevSignIn(nil)
	a.signInDev("pat", "perfusionist")
	a.waitOutbox(0, 60*time.Second)
	stored := witness.entries(t, id, true)
	if len(stored) != len(pending) {
		t.Fatalf("the server holds %d entries, the tablet charted %d", len(stored), len(pending))
	}
	for _, e := range stored {
		if !slices.Contains(pending, e.GetEntryId()) {
			t.Fatalf("stored entry %s was not charted by the tablet (%v)", e.GetEntryId(), pending)
		}
	}
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := httpGet(url)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
