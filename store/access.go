package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// The access audit: who called which RPC on which case, when, from where,
// and with what outcome. It records every call that read or wrote patient
// data and every refused call. It is append-only in the database itself
// (triggers refuse UPDATE and DELETE on both backends), lives in the same
// database as the record, and is written before the call's answer leaves
// the server: a call whose audit record cannot be written fails.
//
// The audit proves itself the way the record does (charting/ledger.go):
// every event is a link of a hash chain, one chain per site (see
// AccessLinkHash). One chain per site rather than one for the whole audit
// because appending a link locks its chain's head: a single chain would
// serialise every audited call of every site on one row lock, while per
// site, sites do not wait for one another, and a site's chain is what its
// privacy officer reviews. Per day was the other candidate; it would still
// put every call of the day on one lock. VerifyAccessAudit re-hashes every
// stored event and names the first bad link of each chain.
//
// Break-glass grants let a caller without access to a case's site open it
// for emergency care, with a stated reason, for a limited time. They are
// kept here too; their start and end are access events.

// AccessEvent is one audited call.
type AccessEvent struct {
	// ID is assigned by the server (random), so a listing can page.
	ID uuid.UUID
	// At is when the call ended.
	At time.Time
	// Principal is the caller ("" when it could not be authenticated).
	Principal string
	// Roles are the caller's roles, space-separated.
	Roles string
	// Via is how the caller authenticated: jwt, mtls, dev-header.
	Via string
	// Method is the RPC's full name.
	Method string
	// CaseID is the case the call named, if any (uuid.Nil otherwise).
	CaseID uuid.UUID
	// Code is the gRPC status code name: OK, PermissionDenied, ….
	Code string
	// Reason says why a call was refused or how it was let in (e.g.
	// "break-glass"); never request content.
	Reason string
	// ClientAddr is the caller's network address.
	ClientAddr string

	// Site is the chain the event belongs to. AppendAccessEvents sets it
	// to the site of the case CaseID names when that case exists, so the
	// caller cannot file a case's access under another site; otherwise it
	// keeps what the caller gave (the site a list was confined to), or ""
	// for events that reach no site.
	Site string
	// CaseIDs are the cases a list or cohort call returned, sorted, when
	// there were at most MaxListedCaseIDs of them; nil otherwise.
	CaseIDs []uuid.UUID
	// CaseCount is how many distinct cases the call returned (0 for calls
	// that return no list).
	CaseCount int
	// CaseSetDigest is the hex SHA-256 of the returned set (CaseSetDigest),
	// for any size: with Query it identifies what a large list returned.
	CaseSetDigest string
	// Query is the list's request as JSON (filters, sort, page): it names
	// no patient, so it may be stored and shown.
	Query string

	// Set by the store on append and returned by listings.

	// Seq is the event's place in its site's chain (1, 2, …); 0 for an
	// event stored before the chain existed.
	Seq int64
	// PrevHash and Hash are the link's hashes (zero before the chain).
	PrevHash, Hash charting.Hash
	// BreakGlass says the event is part of break-glass use: opening a
	// grant, a call a grant let in, or a grant's end (derived from Method
	// and Reason).
	BreakGlass bool
}

// MaxListedCaseIDs is how many case ids an event lists verbatim. A larger
// result (a cohort extract of thousands of cases) is recorded by its count,
// the digest of its set and the query, which keeps an audit row small while
// still letting a reviewer check a claimed set against it (CaseSetDigest)
// and see what was asked.
const MaxListedCaseIDs = 100

// SetCases records the cases a list returned: ids deduplicated and sorted,
// kept verbatim up to MaxListedCaseIDs, always counted and digested.
func (e *AccessEvent) SetCases(ids []uuid.UUID) {
	set := slices.Clone(ids)
	slices.SortFunc(set, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	set = slices.Compact(set)
	e.CaseCount = len(set)
	e.CaseSetDigest = CaseSetDigest(set)
	e.CaseIDs = nil
	if len(set) <= MaxListedCaseIDs {
		e.CaseIDs = set
	}
}

// CaseSetDigest is SHA-256("perfusion.access.cases.v1" 0x00 ‖ each id's
// text followed by "\n"), ids sorted, in hex. Anyone holding a list of
// case ids can recompute it.
func CaseSetDigest(sorted []uuid.UUID) string {
	h := sha256.New()
	h.Write([]byte("perfusion.access.cases.v1\x00"))
	for _, id := range sorted {
		h.Write([]byte(id.String() + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// JoinCaseIDs is the stored form of CaseIDs: space-separated.
func JoinCaseIDs(ids []uuid.UUID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, " ")
}

// SplitCaseIDs parses JoinCaseIDs's form; a malformed id parses as
// uuid.Nil, which then fails verification rather than vanishing.
func SplitCaseIDs(s string) []uuid.UUID {
	if s == "" {
		return nil
	}
	f := strings.Fields(s)
	out := make([]uuid.UUID, len(f))
	for i, v := range f {
		out[i], _ = uuid.Parse(v)
	}
	return out
}

// accessLinkContent is the hashed content of an access event, in a fixed
// field order. Changing it changes every hash: add a new domain version
// instead.
type accessLinkContent struct {
	Site          string    `json:"site"`
	Seq           int64     `json:"seq"`
	EventID       uuid.UUID `json:"event_id"`
	At            time.Time `json:"at"`
	Principal     string    `json:"principal"`
	Roles         string    `json:"roles"`
	Via           string    `json:"via"`
	Method        string    `json:"method"`
	CaseID        string    `json:"case_id"`
	Code          string    `json:"code"`
	Reason        string    `json:"reason"`
	ClientAddr    string    `json:"client_addr"`
	CaseIDs       string    `json:"case_ids"`
	CaseCount     int       `json:"case_count"`
	CaseSetDigest string    `json:"case_set_digest"`
	Query         string    `json:"query"`
}

// AccessGenesis is the PrevHash of the first link of a site's chain:
// SHA-256("perfusion.access.genesis.v1" 0x00 ‖ site). It binds a chain to
// its site, so a whole chain cannot be passed off as another site's.
func AccessGenesis(site string) charting.Hash {
	return sha256.Sum256([]byte("perfusion.access.genesis.v1\x00" + site))
}

// AccessLinkHash is the hash of e as a link after prev:
// SHA-256("perfusion.access.v1" 0x00 ‖ prev ‖ uvarint(len(content)) ‖
// content), content being the canonical JSON (declaration order, no HTML
// escaping, times in UTC at microsecond precision) of every stored field
// but the hashes and the derived BreakGlass: the record's ledger style.
func AccessLinkHash(prev charting.Hash, e *AccessEvent) charting.Hash {
	c := accessLinkContent{Site: e.Site, Seq: e.Seq, EventID: e.ID, At: charting.NormTime(e.At), Principal: e.Principal, Roles: e.Roles,
		Via: e.Via, Method: e.Method, Code: e.Code, Reason: e.Reason, ClientAddr: e.ClientAddr,
		CaseIDs: JoinCaseIDs(e.CaseIDs), CaseCount: e.CaseCount, CaseSetDigest: e.CaseSetDigest, Query: e.Query}
	if e.CaseID != uuid.Nil {
		c.CaseID = e.CaseID.String()
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		panic(fmt.Sprintf("store: access link does not encode: %v", err)) // plain struct: cannot happen
	}
	content := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	h := sha256.New()
	h.Write([]byte("perfusion.access.v1\x00"))
	h.Write(prev[:])
	h.Write(binary.AppendUvarint(nil, uint64(len(content))))
	h.Write(content)
	var out charting.Hash
	h.Sum(out[:0])
	return out
}

// ChainAccessEvents makes es links of their sites' chains: heads maps a
// site to its current head (a missing site starts at its genesis) and is
// advanced in place. Backends call it inside the transaction that holds
// the heads' locks.
func ChainAccessEvents(es []AccessEvent, heads map[string]AccessChainHead) {
	for i := range es {
		e := &es[i]
		h, ok := heads[e.Site]
		if !ok {
			h = AccessChainHead{Site: e.Site, Hash: AccessGenesis(e.Site)}
		}
		e.Seq, e.PrevHash = h.Seq+1, h.Hash
		e.Hash = AccessLinkHash(e.PrevHash, e)
		heads[e.Site] = AccessChainHead{Site: e.Site, Seq: e.Seq, Hash: e.Hash}
	}
}

// AccessChainHead is the last link of a site's chain as the store records
// it.
type AccessChainHead struct {
	Site string
	Seq  int64
	Hash charting.Hash
}

// Break-glass grants let
// AccessFilter selects access events. Zero values match anything.
type AccessFilter struct {
	From, To  time.Time // At >= From, At < To
	Principal string
	// CaseID keeps events that name the case or whose listed CaseIDs
	// include it.
	CaseID uuid.UUID
	// Method keeps one RPC (full name) or action (break-glass-expired).
	Method string
	// Site keeps one site's events ("" matches all; use NoSite for events
	// that reach no site).
	Site string
	// Code keeps one outcome (a gRPC code name, e.g. OK, NotFound).
	Code string
	// DeniedOnly keeps refused calls only.
	DeniedOnly bool
	// BreakGlass keeps break-glass events only.
	BreakGlass bool
	// Sort and Desc order the listing; ties are broken by time, then id,
	// in the same direction. The zero value is time, ascending; Desc true
	// with the zero Sort is the default report, newest first.
	Sort  AccessSort
	Desc  bool
	Limit int
	// After continues a listing after this event (keyset pagination) in
	// the same Sort and Desc.
	After *AccessCursor
}

// NoSite selects, as AccessFilter.Site, the events that reach no site.
const NoSite = "-"

// AccessSort is the element an access listing is sorted by.
type AccessSort int

// The sort keys (ONC 170.315(d)(3): sort by each element).
const (
	SortAccessAt AccessSort = iota
	SortAccessPrincipal
	SortAccessMethod
	SortAccessCase
	SortAccessSite
	SortAccessCode
	SortAccessBreakGlass
)

// AccessCursor is a position in an access listing: the last event's sort
// key (as text: "true"/"false" for break-glass, the id for a case, "" for
// none), time and id.
type AccessCursor struct {
	Key string
	At  time.Time
	ID  uuid.UUID
}

// CursorKey returns e's sort key under s, as AccessCursor.Key holds it.
func (e *AccessEvent) CursorKey(s AccessSort) string {
	switch s {
	case SortAccessPrincipal:
		return e.Principal
	case SortAccessMethod:
		return e.Method
	case SortAccessCase:
		if e.CaseID == uuid.Nil {
			return ""
		}
		return e.CaseID.String()
	case SortAccessSite:
		return e.Site
	case SortAccessCode:
		return e.Code
	case SortAccessBreakGlass:
		if e.BreakGlass {
			return "true"
		}
		return "false"
	}
	return ""
}

// BreakGlassGrant is emergency access of one principal to one case.
type BreakGlassGrant struct {
	ID        uuid.UUID
	Principal string
	CaseID    uuid.UUID
	// Site is the case's site, which the principal could not reach.
	Site string
	// Reason is the stated emergency, as typed. It is shown to reviewers,
	// never logged.
	Reason    string
	StartedAt time.Time
	ExpiresAt time.Time
	// EndedAt is set once the grant's end has been audited (ended by its
	// holder, or expired); zero before.
	EndedAt time.Time
	// EndReason is "ended" or "expired".
	EndReason string
}

// BreakGlassFilter selects grants, newest first. Zero values match
// anything.
type BreakGlassFilter struct {
	From, To  time.Time // StartedAt in [From, To)
	Principal string
	CaseID    uuid.UUID
	Limit     int
}

// AccessBackend keeps the access audit and break-glass grants. Both
// store/postgres and store/sqlite implement it; use AccessOf to find it.
type AccessBackend interface {
	// AppendAccessEvents inserts events as the next links of their sites'
	// chains (Site resolved from CaseID, Seq and hashes set; see
	// ChainAccessEvents), in one transaction that locks each site's head,
	// sites in sorted order. Nothing else ever changes them.
	AppendAccessEvents(ctx context.Context, es []AccessEvent) error
	// ListAccessEvents returns events matching f in f's order, at most
	// f.Limit.
	ListAccessEvents(ctx context.Context, f AccessFilter) ([]AccessEvent, error)
	// AccessChainHeads returns every site's recorded chain head, by site.
	AccessChainHeads(ctx context.Context) ([]AccessChainHead, error)
	// AccessChainLinks returns site's chained events with Seq > after in
	// Seq order (ties by id), at most limit: as stored, for verification.
	AccessChainLinks(ctx context.Context, site string, after int64, limit int) ([]AccessEvent, error)
	// AccessChainSites returns every site that has chained events.
	AccessChainSites(ctx context.Context) ([]string, error)
	// UnchainedAccessEvents counts the events stored before the chain
	// existed.
	UnchainedAccessEvents(ctx context.Context) (int64, error)
	// InsertBreakGlass stores a new grant.
	InsertBreakGlass(ctx context.Context, g BreakGlassGrant) error
	// ActiveBreakGlass returns principal's grant on caseID that has not
	// ended and expires after now; charting.ErrNotFound when none.
	ActiveBreakGlass(ctx context.Context, principal string, caseID uuid.UUID, now time.Time) (*BreakGlassGrant, error)
	// EndBreakGlass marks grants ended and returns them: the one with id
	// (reason "ended"; uuid.Nil for none), and every grant expired at now
	// and not yet marked (reason "expired"). A grant is marked once.
	EndBreakGlass(ctx context.Context, id uuid.UUID, principal string, now time.Time) ([]BreakGlassGrant, error)
	// ListBreakGlass returns grants matching f, newest first.
	ListBreakGlass(ctx context.Context, f BreakGlassFilter) ([]BreakGlassGrant, error)
}

// ErrNoAccessAudit is returned for a backend that keeps no access audit.
var ErrNoAccessAudit = errors.New("store: backend keeps no access audit")

// AccessOf returns b's access audit.
func AccessOf(b Backend) (AccessBackend, error) {
	a, ok := capability[AccessBackend](b)
	if !ok {
		return nil, ErrNoAccessAudit
	}
	return a, nil
}

// Access returns the access audit of the store's backend.
func (s *Store) Access() (AccessBackend, error) { return AccessOf(s.b) }

// AccessChainReport is the verification of one site's chain.
type AccessChainReport struct {
	Site string
	// Links is how many links were checked (up to the first bad one).
	Links int64
	// Head is the recorded head (seq and hash of the last link).
	Head AccessChainHead
	// OK is true when every link re-hashes to its stored hash, follows the
	// one before and the chain ends at the recorded head.
	OK bool
	// BadSeq is the first bad link's place in the chain, BadEventID its
	// event (uuid.Nil when the link is missing) and Problem what is wrong.
	BadSeq     int64
	BadEventID uuid.UUID
	Problem    string
}

// AccessAuditReport is the verification of the whole access audit.
type AccessAuditReport struct {
	Chains []AccessChainReport
	// Unchained counts events stored before the chain existed (before
	// migration 007_access_chain), which no chain covers.
	Unchained int64
}

// OK reports whether every chain verified.
func (r *AccessAuditReport) OK() bool {
	for _, c := range r.Chains {
		if !c.OK {
			return false
		}
	}
	return true
}

// verifyPage is how many links verification reads at a time.
const verifyPage = 1000

// VerifyAccessAudit re-hashes every chained access event of site (every
// site when site is ""; NoSite for the chain of events that reach no site)
// and names each chain's first bad link: a link whose content no longer
// gives its hash (an edited event), whose PrevHash is not the hash before
// it (a removed, inserted or reordered event), a missing or repeated place
// (a deleted or moved event), or a chain that stops short of, or runs
// past, its recorded head (a truncated tail, or a head rolled back). It
// reads the stored rows, never trusting stored hashes alone.
func VerifyAccessAudit(ctx context.Context, a AccessBackend, site string) (*AccessAuditReport, error) {
	heads, err := a.AccessChainHeads(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify access audit: heads: %w", err)
	}
	sites, err := a.AccessChainSites(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify access audit: sites: %w", err)
	}
	bySite := map[string]AccessChainHead{}
	for _, h := range heads {
		bySite[h.Site] = h
		sites = append(sites, h.Site)
	}
	slices.Sort(sites)
	sites = slices.Compact(sites)
	if site != "" {
		want := site
		if site == NoSite {
			want = ""
		}
		sites = slices.DeleteFunc(sites, func(s string) bool { return s != want })
		if len(sites) == 0 {
			sites = []string{want}
		}
	}
	rep := &AccessAuditReport{}
	if rep.Unchained, err = a.UnchainedAccessEvents(ctx); err != nil {
		return nil, fmt.Errorf("verify access audit: unchained: %w", err)
	}
	for _, s := range sites {
		head, ok := bySite[s]
		if !ok {
			head = AccessChainHead{Site: s, Hash: AccessGenesis(s)}
		}
		c, err := verifyChain(ctx, a, s, head, ok)
		if err != nil {
			return nil, err
		}
		rep.Chains = append(rep.Chains, c)
	}
	return rep, nil
}

func verifyChain(ctx context.Context, a AccessBackend, site string, head AccessChainHead, headRecorded bool) (AccessChainReport, error) {
	r := AccessChainReport{Site: site, Head: head}
	bad := func(seq int64, id uuid.UUID, problem string) (AccessChainReport, error) {
		r.BadSeq, r.BadEventID, r.Problem = seq, id, problem
		return r, nil
	}
	if !headRecorded {
		return bad(1, uuid.Nil, "the chain has events but no recorded head")
	}
	prev, seq := AccessGenesis(site), int64(0)
	var after int64
	for {
		links, err := a.AccessChainLinks(ctx, site, after, verifyPage)
		if err != nil {
			return r, fmt.Errorf("verify access audit: site chain: %w", err)
		}
		for i := range links {
			e := &links[i]
			switch {
			case e.Seq == seq:
				return bad(e.Seq, e.ID, "a second event holds this place in the chain (an event was moved or inserted)")
			case e.Seq != seq+1:
				return bad(seq+1, uuid.Nil, fmt.Sprintf("link missing: the chain jumps from %d to %d (an event was deleted or moved)", seq, e.Seq))
			case e.PrevHash != prev:
				return bad(e.Seq, e.ID, "the link does not follow the one before it (an event was removed, inserted or reordered)")
			case AccessLinkHash(e.PrevHash, e) != e.Hash:
				return bad(e.Seq, e.ID, "the event's content does not match its hash (the event was changed)")
			}
			prev, seq = e.Hash, e.Seq
			r.Links++
			if seq > head.Seq {
				return bad(seq, e.ID, fmt.Sprintf("the chain runs past its recorded head %d (the head was set back)", head.Seq))
			}
		}
		if len(links) < verifyPage {
			break
		}
		after = links[len(links)-1].Seq
	}
	if seq < head.Seq {
		return bad(seq+1, uuid.Nil, fmt.Sprintf("the chain ends at %d but its recorded head is %d (the tail was deleted)", seq, head.Seq))
	}
	if prev != head.Hash {
		return bad(seq, uuid.Nil, "the last link's hash is not the recorded head's")
	}
	r.OK = true
	return r, nil
}
