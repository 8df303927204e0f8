package server

import "slices"

// This file is the ONE authorization policy of the API: for every RPC
// (full method name), who may call it and how the call is scoped and
// audited. A method missing here is refused for everyone (fail closed), and
// TestPolicyCoversEveryRPC fails, so a new RPC cannot ship without an
// entry. Add yours next to its service's.

// Role is what a caller may do, granted by the identity provider (the
// roles claim) or by the certificate mapping of a service principal.
type Role string

// The roles.
const (
	// RolePerfusionist charts cases, streams device data, closes and signs.
	RolePerfusionist Role = "perfusionist"
	// RoleAnesthesiologist charts, closes and signs alongside the
	// perfusionist.
	RoleAnesthesiologist Role = "anesthesiologist"
	// RoleReviewer reads cases for quality review: de-identified unless
	// also granted RoleIdentified.
	RoleReviewer Role = "reviewer"
	// RoleDevice is a device gateway (a heart-lung machine's or monitor's
	// data gateway): it streams samples into cases of its sites and lists
	// the sources it resumes from. Nothing it may call returns patient
	// data: no names, MRN, birth date, entries or free text.
	RoleDevice Role = "device"
	// RoleInterface is an interface engine: it renders and delivers the
	// HL7 v2 and FHIR exports of its sites' cases and follows their
	// deliveries, and submits its sites' FHIR Appointments (the twin of
	// the inbound SIU feed). Those carry patient identifiers (the EHR needs them),
	// which is why a device gateway does not hold this role.
	RoleInterface Role = "interface"
	// RoleAdmin reads every site's cases and the access audit, and reviews
	// break-glass use. It writes no clinical data.
	RoleAdmin Role = "admin"
	// RoleIdentified is a grant, not a job: a reviewer holding it may call
	// RPCs that return patient identifiers.
	RoleIdentified Role = "identified"
)

// AllRoles returns every role, for development identities.
func AllRoles() []Role {
	return []Role{RolePerfusionist, RoleAnesthesiologist, RoleReviewer, RoleDevice, RoleInterface, RoleAdmin, RoleIdentified}
}

// ServiceRoles are the roles of service principals (client certificates):
// a certificate maps to exactly one of them, never to a person's role.
func ServiceRoles() []Role { return []Role{RoleDevice, RoleInterface} }

// RetiredRoleIntegration is the role that once made a caller both a
// device gateway and an interface engine, and so let a pump gateway read
// patients. It grants nothing: start-up refuses it for client
// certificates, and a token holding it is refused with a message naming
// RoleDevice and RoleInterface.
const RetiredRoleIntegration Role = "integration"

// Scope says how a call is confined to the caller's sites.
type Scope int

// The scopes.
const (
	// ScopeNone: the call touches no case (or reads only what the caller
	// may see anyway, such as its own audit rights).
	ScopeNone Scope = iota
	// ScopeCase: the request names a case (a case_id field, at the top or
	// one message down, in every message of a stream); the case's site must
	// be among the caller's sites.
	ScopeCase
	// ScopeSite: the request names a site (a top-level site field) that
	// must be among the caller's sites, e.g. creating a case.
	ScopeSite
	// ScopeList: a list whose site filter must be one of the caller's
	// sites; a caller with a single site has it filled in.
	ScopeList
)

// Rule is the policy of one RPC.
type Rule struct {
	// Public methods need no authentication: health checks and reflection.
	Public bool
	// Roles may call the method.
	Roles []Role
	// Identified: the response carries patient identifiers (names, MRN,
	// birth date, free text), so a reviewer needs RoleIdentified too.
	Identified bool
	// Scope confines the call to the caller's sites.
	Scope Scope
	// PatientData: the call reads or writes patient data and is recorded
	// in the access audit (denied calls are recorded whatever this says).
	PatientData bool
	// RecentAuth: the caller must have authenticated within the signing
	// window (auth_time), as a signature is a legal attestation.
	RecentAuth bool
	// Writes: the call changes the record (or what is delivered from it,
	// or who may reach it). Its access is recorded before the handler
	// runs ("write started"), so when the audit cannot be written the call
	// is refused before anything is written; its outcome is recorded
	// after, as for every call.
	Writes bool
}

var (
	clinicians = []Role{RolePerfusionist, RoleAnesthesiologist}
	readers    = []Role{RolePerfusionist, RoleAnesthesiologist, RoleReviewer, RoleAdmin}
	reviewers  = []Role{RoleReviewer, RoleAdmin}
	exporters  = []Role{RolePerfusionist, RoleAnesthesiologist, RoleInterface, RoleAdmin}
)

// policy is the table. Keys are full method names as gRPC reports them.
var policy = map[string]Rule{
	// Health and reflection: load balancers and tools, no patient data.
	"/grpc.health.v1.Health/Check":                                   {Public: true},
	"/grpc.health.v1.Health/List":                                    {Public: true},
	"/grpc.health.v1.Health/Watch":                                   {Public: true},
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {Public: true},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {Public: true},

	// CaseService.
	"/perfusion.v1.CaseService/CreateCase":        {Roles: clinicians, Scope: ScopeSite, PatientData: true, Writes: true},
	"/perfusion.v1.CaseService/GetCase":           {Roles: readers, Identified: true, Scope: ScopeCase, PatientData: true},
	"/perfusion.v1.CaseService/ListCases":         {Roles: readers, Identified: true, Scope: ScopeList, PatientData: true},
	"/perfusion.v1.CaseService/UpdateCaseDetails": {Roles: clinicians, Scope: ScopeCase, PatientData: true, Writes: true},
	"/perfusion.v1.CaseService/CloseCase":         {Roles: clinicians, Scope: ScopeCase, PatientData: true, Writes: true},
	"/perfusion.v1.CaseService/SignCase":          {Roles: []Role{RolePerfusionist, RoleAnesthesiologist, RoleReviewer}, Scope: ScopeCase, PatientData: true, RecentAuth: true, Writes: true},
	"/perfusion.v1.CaseService/AddAddendum":       {Roles: clinicians, Scope: ScopeCase, PatientData: true, Writes: true},
	// Completing a patient identity: the perfusionist who charted the case
	// or an administrator (registration, the EHR's merges).
	"/perfusion.v1.CaseService/ReconcileIdentity": {Roles: []Role{RolePerfusionist, RoleAdmin}, Scope: ScopeCase, PatientData: true, Writes: true},
	// How the identity came to be (details versions, reconciliations by
	// people and by the EHR's feed): whoever may read the case, identified.
	"/perfusion.v1.CaseService/GetIdentityHistory": {Roles: readers, Identified: true, Scope: ScopeCase, PatientData: true},
	// Asking the EHR for a patient to fill in a new case: those who create
	// cases, at a site of theirs, and administrators.
	"/perfusion.v1.CaseService/LookupPatient": {Roles: []Role{RolePerfusionist, RoleAnesthesiologist, RoleAdmin}, Identified: true, Scope: ScopeSite, PatientData: true},

	// ChartingService. A device writes samples and reads back only what it
	// sent (resume points, acknowledgements, its sources' counts and
	// times); entries are charted by people, so it records none.
	"/perfusion.v1.ChartingService/StreamSamples": {Roles: []Role{RoleDevice, RolePerfusionist}, Scope: ScopeCase, PatientData: true},
	"/perfusion.v1.ChartingService/RecordEntry":   {Roles: clinicians, Scope: ScopeCase, PatientData: true, Writes: true},
	"/perfusion.v1.ChartingService/CorrectEntry":  {Roles: clinicians, Scope: ScopeCase, PatientData: true, Writes: true},
	// Entries carry free-text notes: identified.
	"/perfusion.v1.ChartingService/ListEntries": {Roles: readers, Identified: true, Scope: ScopeCase, PatientData: true},
	// Device samples identify no one: reviewers may read them.
	"/perfusion.v1.ChartingService/QuerySamples": {Roles: readers, Scope: ScopeCase, PatientData: true},
	"/perfusion.v1.ChartingService/ListSources":  {Roles: append(slices.Clone(readers), RoleDevice), Scope: ScopeCase, PatientData: true},
	// A watch carries entries, free-text notes included: identified.
	"/perfusion.v1.ChartingService/WatchCase": {Roles: readers, Identified: true, Scope: ScopeCase, PatientData: true},

	// RecordService.
	"/perfusion.v1.RecordService/VerifyRecord":  {Roles: readers, Scope: ScopeCase, PatientData: true},
	"/perfusion.v1.RecordService/GetAuditTrail": {Roles: readers, Identified: true, Scope: ScopeCase, PatientData: true},

	// ReviewService: quality review across cases, de-identified by default.
	// Aggregates and Safe Harbor extracts identify no patient, so any
	// reviewer may have them; per-case listings carry case ids and exact
	// dates of service (PHI under Safe Harbor), so a reviewer needs the
	// identified grant for those. Lists are confined to the caller's sites
	// through filter.site.
	"/perfusion.v1.ReviewService/QueryCases":       {Roles: reviewers, Identified: true, Scope: ScopeList, PatientData: true},
	"/perfusion.v1.ReviewService/AggregateMetrics": {Roles: reviewers, Scope: ScopeList, PatientData: true},
	"/perfusion.v1.ReviewService/GetCaseMetrics":   {Roles: readers, Identified: true, Scope: ScopeCase, PatientData: true},
	"/perfusion.v1.ReviewService/ExportCohort":     {Roles: reviewers, Scope: ScopeList, PatientData: true},

	// ExportService: previews carry patient identifiers; delivery listings
	// carry receivers' free text (ACK text), which may repeat them. The
	// interface engine (interface, confined to its sites) and admins run
	// deliveries; clinicians may see whether their case went out. No
	// device may call any of them.
	"/perfusion.v1.ExportService/RenderHL7":      {Roles: exporters, Identified: true, Scope: ScopeCase, PatientData: true},
	"/perfusion.v1.ExportService/RenderFHIR":     {Roles: exporters, Identified: true, Scope: ScopeCase, PatientData: true},
	"/perfusion.v1.ExportService/RenderDocument": {Roles: exporters, Identified: true, Scope: ScopeCase, PatientData: true},
	"/perfusion.v1.ExportService/ListDeliveries": {Roles: exporters, Identified: true, Scope: ScopeList, PatientData: true},
	"/perfusion.v1.ExportService/RetryDelivery":  {Roles: []Role{RoleInterface, RoleAdmin}, Scope: ScopeCase, PatientData: true, Writes: true},
	// Superseding decides that a receiver never gets a version: the same
	// people who run deliveries, identified, since who decided is recorded.
	"/perfusion.v1.ExportService/SupersedeDelivery": {Roles: []Role{RoleInterface, RoleAdmin}, Identified: true, Scope: ScopeCase, PatientData: true, Writes: true},
	// AccessService: the access audit and break-glass. Opening a grant is
	// not site-scoped (that is its point) but audited, with its case.
	"/perfusion.v1.AccessService/ListAccessEvents": {Roles: []Role{RoleAdmin}},
	"/perfusion.v1.AccessService/OpenBreakGlass":   {Roles: clinicians, PatientData: true, Writes: true},
	"/perfusion.v1.AccessService/EndBreakGlass":    {Roles: clinicians, PatientData: true, Writes: true},
	"/perfusion.v1.AccessService/ListBreakGlass":   {Roles: []Role{RoleAdmin}},
	// Verifying the access audit reads every event; it is audited as a read
	// of the audit (access_audit.go, auditReads).
	"/perfusion.v1.AccessService/VerifyAccessAudit": {Roles: []Role{RoleAdmin}},

	// InboundService: what the EHR sent over HL7 v2 and what it changed.
	// The journal spans every site, and its messages hold patient data:
	// administrators only, recorded with the cases each call named.
	"/perfusion.v1.InboundService/ListInboundMessages":  {Roles: []Role{RoleAdmin}, PatientData: true},
	"/perfusion.v1.InboundService/GetInboundMessage":    {Roles: []Role{RoleAdmin}, PatientData: true},
	"/perfusion.v1.InboundService/ReplayInboundMessage": {Roles: []Role{RoleAdmin}, PatientData: true, Writes: true},
	// The FHIR twin of SIU: the interface engine, for a site of its own.
	"/perfusion.v1.InboundService/SubmitAppointment": {Roles: []Role{RoleInterface, RoleAdmin}, Scope: ScopeSite, PatientData: true, Writes: true},
}

// PolicyFor returns the rule of a full method name, and whether there is
// one.
func PolicyFor(method string) (Rule, bool) {
	r, ok := policy[method]
	return r, ok
}

// allows reports whether p may call a method with rule r, before site
// scoping: one of the rule's roles, and for identified data a reviewer
// (who holds no clinical role) needs RoleIdentified.
func (r Rule) allows(p Principal) bool {
	for _, role := range r.Roles {
		if !p.HasRole(role) {
			continue
		}
		if role == RoleReviewer && r.Identified && !p.HasRole(RoleIdentified) {
			continue
		}
		return true
	}
	return false
}
