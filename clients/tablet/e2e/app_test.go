package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "perfusion/api/perfusion/v1"
)

// app is a tab using the tablet served by one perfusiond: the steps a
// person takes, in the DOM contract's terms (TABLET-CONTRACT.md).
type app struct {
	*tab
	srv *perfusiond

	mu sync.Mutex
	// devSignIn edits the body of the page's POST /tablet/dev-sign-in.
	devSignIn map[string]any
}

// openApp starts a browser of the given viewport on the tablet's origin.
func openApp(t *testing.T, srv *perfusiond, name string, width, height int64) *app {
	t.Helper()
	a := &app{tab: newTab(t, name, width, height), srv: srv}
	// The development sign-in form offers session lengths down to 10 s;
	// the expiry test asks for 2 s (ttlSeconds, which the server takes
	// down to 1 s) by editing the request on its way.
	a.rewriteRequests("*/tablet/dev-sign-in", func(body []byte) []byte {
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(a.devSignIn) == 0 {
			return body
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return body
		}
		for k, v := range a.devSignIn {
			m[k] = v
		}
		out, _ := json.Marshal(m)
		return out
	})
	a.navigate(srv.base + "/")
	return a
}

// setDevSignIn sets what the next development sign-ins ask for beyond the
// form (ttlSeconds); nil sends the form as it is.
func (a *app) setDevSignIn(m map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.devSignIn = m
}

// signInDev signs in with the development form as subject with role.
func (a *app) signInDev(subject, role string) {
	a.t.Helper()
	a.submitDevSignIn(subject, role)
	a.waitSignedIn(subject)
}

// submitDevSignIn fills the development sign-in form and submits it.
func (a *app) submitDevSignIn(subject, role string) {
	a.t.Helper()
	a.waitVisible(testid("signin") + " input[name=subject]")
	a.fill(testid("signin"), map[string]any{"subject": subject, "role": role})
	a.click(testid("dev-sign-in"))
}

// waitSignedIn waits until the page shows subject as the signed-in user.
func (a *app) waitSignedIn(subject string) {
	a.t.Helper()
	a.waitJS(defaultWait, "signed in as "+subject, fmt.Sprintf(
		`(document.querySelector('[data-testid=whoami]')?.textContent || "").includes(%q)`, subject))
}

// signInOIDC signs in through the identity provider (no form: the mock
// approves by itself) and waits for the board.
func (a *app) signInOIDC(subject string) {
	a.t.Helper()
	a.waitVisible(testid("oidc-sign-in"))
	a.click(testid("oidc-sign-in"))
	a.waitSignedIn(subject)
}

// caseCard is the selector of a case's card on the board.
func caseCard(id string) string { return fmt.Sprintf(`[data-testid=case-card][data-case-id=%q]`, id) }

// caseView is the selector of a case's view.
func caseView(id string) string { return fmt.Sprintf(`[data-testid=case-view][data-case-id=%q]`, id) }

// openCase opens a case from the board and waits for its view.
func (a *app) openCase(id string) {
	a.t.Helper()
	a.waitVisible(testid("board"))
	a.waitVisible(caseCard(id))
	a.click(caseCard(id))
	a.waitVisible(caseView(id))
}

// caseState is data-state of the open case's view.
func (a *app) caseState() string {
	return a.attr(testid("case-view"), "data-state")
}

// entryIDs lists the entry ids in the timeline, in page order.
func (a *app) entryIDs() []string {
	a.t.Helper()
	return call[[]string](a.tab, `() => [...document.querySelectorAll("[data-testid=timeline] [data-testid=entry]")].map(e => e.dataset.entryId)`)
}

// entryStatus is data-status of an entry in the timeline.
func (a *app) entryStatus(id string) string {
	return a.attr(entrySel(id), "data-status")
}

func entrySel(id string) string { return fmt.Sprintf(`[data-testid=entry][data-entry-id=%q]`, id) }

// outboxCount is the number the page shows as not yet acknowledged.
func (a *app) outboxCount() string { return a.text(testid("outbox-count")) }

// waitOutbox waits until the outbox shows n.
func (a *app) waitOutbox(n int, limit time.Duration) {
	a.t.Helper()
	a.waitJS(limit, fmt.Sprintf("outbox count %d", n), fmt.Sprintf(
		`(document.querySelector('[data-testid=outbox-count]')?.textContent || "").trim() === %q`, fmt.Sprint(n)))
}

// dialogOpen says whether the entry dialog is shown.
func (a *app) dialogOpen() bool {
	return eval[bool](a.tab, `(() => { const d = document.querySelector("[data-testid=entry-dialog]"); return !!d && d.offsetParent !== null })()`)
}

// waitDialogClosed waits for the dialog to close after its confirm, and
// fails with what the dialog or the banner says otherwise.
func (a *app) waitDialogClosed(what string) {
	a.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !a.dialogOpen() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.t.Fatalf("%s: the dialog stays open after confirm; it says %q, the banner %q", what,
		a.text(testid("entry-dialog")+" [role=alert]"), a.errorText())
}

// errorText is the error banner's text, "" when none is shown.
func (a *app) errorText() string {
	return a.text(testid("error"))
}

// chart taps trigger (a quick entry or an add-… button), fills the entry
// dialog if one opens with those of values whose fields it has, confirms,
// and returns the ids of the entries that appeared in the timeline. The
// dialog's fields are logged, so a changed form is easy to see.
func (a *app) chart(trigger string, values map[string]any) []string {
	a.t.Helper()
	before := a.entryIDs()
	a.click(testid(trigger))
	// Event-only quick entries store on the tap; the others open the
	// dialog. Wait for one or the other.
	deadline := time.Now().Add(5 * time.Second)
	var dialog bool
	for time.Now().Before(deadline) {
		if dialog = a.dialogOpen(); dialog || len(a.entryIDs()) > len(before) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dialog {
		names := a.fieldNames(testid("entry-dialog"))
		use := map[string]any{}
		for k, v := range values {
			if slices.Contains(names, k) {
				use[k] = v
			}
		}
		if v, ok := values[firstRadios]; ok {
			for i, n := range a.radioGroups(testid("entry-dialog")) {
				if i == 2 {
					break
				}
				use[n] = v
			}
		}
		a.t.Logf("%s: dialog fields %v; filled %v", trigger, names, use)
		if len(use) > 0 {
			a.fill(testid("entry-dialog"), use)
		}
		a.click(testid("entry-confirm"))
		a.waitDialogClosed(trigger)
	}
	var added []string
	a.waitJS(10*time.Second, trigger+": a new entry in the timeline", fmt.Sprintf(
		`document.querySelectorAll("[data-testid=timeline] [data-testid=entry]").length > %d`, len(before)))
	time.Sleep(200 * time.Millisecond) // a panel may add several entries at once
	for _, id := range a.entryIDs() {
		if !slices.Contains(before, id) {
			added = append(added, id)
		}
	}
	return added
}

// firstRadios, as a key of chart's values, sets the first two radio groups
// of the dialog (checklist items) to its value.
const firstRadios = "*radio"

// radioGroups names the radio groups under within, in page order.
func (a *app) radioGroups(within string) []string {
	a.t.Helper()
	return call[[]string](a.tab, `w => [...new Set([...document.querySelector(w).querySelectorAll("input[type=radio]")].map(e => e.name))]`, within)
}

// devSignInIfAsked completes a development sign-in when the page asks for
// one (fresh authentication before signing) before done is true, and says
// whether it did.
func (a *app) devSignInIfAsked(subject, role string, wait time.Duration, done string) bool {
	a.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) && !eval[bool](a.tab, "!!("+done+")") {
		if eval[bool](a.tab, `(() => { const s = document.querySelector("[data-testid=signin] input[name=subject]"); return !!s && s.offsetParent !== null })()`) {
			a.fill(testid("signin"), map[string]any{"subject": subject, "role": role})
			a.click(testid("dev-sign-in"))
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// kindOf names what an entry holds, for the checks against ListEntries.
func kindOf(e *pb.Entry) string {
	switch d := e.GetDetail().(type) {
	case *pb.Entry_Event:
		return "event:" + strings.TrimPrefix(d.Event.GetType().String(), "EVENT_TYPE_")
	case *pb.Entry_Drug:
		return "drug:" + strings.ToLower(d.Drug.GetDrug())
	case *pb.Entry_Fluid:
		return "fluid"
	case *pb.Entry_BloodProduct:
		return "blood_product"
	case *pb.Entry_LabResult:
		return "lab:" + strings.ToLower(d.LabResult.GetAnalyte())
	case *pb.Entry_ChecklistItem:
		return "checklist"
	case *pb.Entry_Note:
		return "note"
	case *pb.Entry_ArtifactMark:
		return "artifact"
	case *pb.Entry_Cardioplegia:
		return "cardioplegia"
	case *pb.Entry_Addendum:
		return "addendum"
	}
	if e.GetVoid() {
		return "void"
	}
	return "unknown"
}

// visibleWithin says whether sel shows within limit, without failing.
func (a *app) visibleWithin(sel string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if call[bool](a.tab, `s => { const e = document.querySelector(s); return !!e && e.offsetParent !== null }`, sel) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
