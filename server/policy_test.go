package server_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "perfusion/api/perfusion/v1"
	"perfusion/server"
)

// registeredMethods lists every method the server serves, by full name.
func registeredMethods(t *testing.T, e *env) []string {
	t.Helper()
	var out []string
	for svc, info := range e.srv.ServiceInfo() {
		for _, m := range info.Methods {
			out = append(out, "/"+svc+"/"+m.Name)
		}
	}
	slices.Sort(out)
	return out
}

// TestPolicyCoversEveryRPC fails when an RPC has no policy entry: every
// service the server registers, and every service of the perfusion API's
// file descriptors (served or not yet).
func TestPolicyCoversEveryRPC(t *testing.T) {
	e := start(t, sqliteBackend(t))
	methods := registeredMethods(t, e)
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "perfusion.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				methods = append(methods, "/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	if len(methods) < 15 {
		t.Fatalf("found only %d methods: the walk is broken", len(methods))
	}
	for _, m := range methods {
		r, ok := server.PolicyFor(m)
		if !ok {
			t.Errorf("%s has no entry in server/policy.go", m)
			continue
		}
		if !r.Public && len(r.Roles) == 0 {
			t.Errorf("%s: no role may call it", m)
		}
	}
}

// caller is one identity of the role table.
type caller struct {
	name  string
	roles []server.Role
}

var callers = []caller{
	{"perfusionist", []server.Role{server.RolePerfusionist}},
	{"anesthesiologist", []server.Role{server.RoleAnesthesiologist}},
	{"reviewer", []server.Role{server.RoleReviewer}},
	{"reviewer-identified", []server.Role{server.RoleReviewer, server.RoleIdentified}},
	{"device", []server.Role{server.RoleDevice}},
	{"interface", []server.Role{server.RoleInterface}},
	{"retired-integration", []server.Role{server.RetiredRoleIntegration}},
	{"admin", []server.Role{server.RoleAdmin}},
	{"no-role", nil},
}

// jwtEnv is a server trusting a development key, and the key to issue
// tokens with.
type jwtEnv struct {
	*env
	key *server.DevKey
}

func startJWT(t *testing.T, adjust ...func(*server.Config)) *jwtEnv {
	t.Helper()
	key, err := server.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	auth, err := server.NewJWTAuthenticator(server.JWTConfig{Keys: key.Keys(), Issuer: server.DevIssuer, Audience: server.DevAudience})
	if err != nil {
		t.Fatal(err)
	}
	adjust = append([]func(*server.Config){func(c *server.Config) { c.Authenticator = auth }}, adjust...)
	return &jwtEnv{env: start(t, sqliteBackend(t), adjust...), key: key}
}

// token returns a context carrying a token for name with roles at sites,
// authenticated authAge ago.
func (e *jwtEnv) token(name string, roles []server.Role, sites []string, authAge time.Duration) context.Context {
	e.t.Helper()
	now := time.Now()
	tok, err := e.key.Issue(server.DevTokenClaims{Subject: name, Roles: roles, Sites: sites, TTL: time.Hour, AuthTime: now.Add(-authAge)}, now)
	if err != nil {
		e.t.Fatal(err)
	}
	return bearer(tok)
}

// createCaseAt creates a case at site as a perfusionist of that site.
func (e *jwtEnv) createCaseAt(site string) string {
	e.t.Helper()
	resp, err := e.cases.CreateCase(e.token("perfusionist-1", []server.Role{server.RolePerfusionist}, []string{site}, 0), &pb.CreateCaseRequest{
		CaseId: uuid.NewString(), Kind: pb.CaseKind_CASE_KIND_CPB, Site: site, Room: "OR-1",
		ScheduledStart: timestamppb.New(time.Now().Truncate(time.Minute)), Details: sampleDetails(),
	})
	if err != nil {
		e.t.Fatalf("create case: %v", err)
	}
	return resp.GetCase().GetCaseId()
}

// requestFor builds an otherwise empty request of method's input type that
// names caseID and site wherever the message has such a field.
func requestFor(t *testing.T, method, caseID, site string) (proto.Message, protoreflect.MethodDescriptor) {
	t.Helper()
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(name))
	m := dynamicpb.NewMessage(md.Input())
	setIDs(m, caseID, site, 0)
	return m, md
}

func setIDs(m protoreflect.Message, caseID, site string, depth int) {
	fields := m.Descriptor().Fields()
	if fd := fields.ByName("case_id"); fd != nil && fd.Kind() == protoreflect.StringKind {
		m.Set(fd, protoreflect.ValueOfString(caseID))
	}
	if fd := fields.ByName("site"); fd != nil && fd.Kind() == protoreflect.StringKind && depth == 0 {
		m.Set(fd, protoreflect.ValueOfString(site))
	}
	if fd := fields.ByName("filter"); fd != nil && fd.Kind() == protoreflect.MessageKind && depth == 0 {
		// Review requests name the site in their filter.
		if sf := fd.Message().Fields().ByName("site"); sf != nil {
			m.Mutable(fd).Message().Set(sf, protoreflect.ValueOfString(site))
		}
	}
	if depth > 0 {
		return
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() || fd.Message().Fields().ByName("case_id") == nil {
			continue
		}
		if fd.ContainingOneof() != nil && m.WhichOneof(fd.ContainingOneof()) != nil {
			continue
		}
		sub := m.Mutable(fd).Message()
		setIDs(sub, caseID, site, depth+1)
	}
}

// call invokes method with req over conn, unary or as a stream that sends
// req once, and returns the status code.
func call(ctx context.Context, conn *grpc.ClientConn, method string, md protoreflect.MethodDescriptor, req proto.Message) codes.Code {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out := dynamicpb.NewMessage(md.Output())
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		return status.Code(conn.Invoke(ctx, method, req, out))
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: md.IsStreamingClient(), ServerStreams: md.IsStreamingServer()}, method)
	if err != nil {
		return status.Code(err)
	}
	if err := s.SendMsg(req); err != nil {
		return status.Code(err)
	}
	s.CloseSend()
	for {
		if err := s.RecvMsg(out); err != nil {
			return status.Code(err)
		}
	}
}

// allowedFor derives from a rule whether a caller holding roles may call
// its method: one of the rule's roles, and for identified data a reviewer
// needs the identified grant too.
func allowedFor(rule server.Rule, roles []server.Role) bool {
	return slices.ContainsFunc(rule.Roles, func(r server.Role) bool {
		return slices.Contains(roles, r) && !(r == server.RoleReviewer && rule.Identified && !slices.Contains(roles, server.RoleIdentified))
	})
}

// TestRoleTable runs every role against every RPC over a real connection:
// an allowed call gets past authorization (whatever the handler then says
// of its empty request), a refused one is PermissionDenied.
func TestRoleTable(t *testing.T) {
	e := startJWT(t)
	caseID := e.createCaseAt("MAIN")
	for _, method := range registeredMethods(t, e.env) {
		rule, _ := server.PolicyFor(method)
		if rule.Public {
			continue
		}
		for _, c := range callers {
			t.Run(strings.TrimPrefix(method, "/perfusion.v1.")+"/"+c.name, func(t *testing.T) {
				req, md := requestFor(t, method, caseID, "MAIN")
				code := call(e.token(c.name+"-1", c.roles, []string{"MAIN"}, 0), e.conn, method, md, req)
				allowed := allowedFor(rule, c.roles)
				switch {
				case allowed && (code == codes.PermissionDenied || code == codes.Unauthenticated):
					t.Fatalf("%s was refused (%s), the policy allows it", c.name, code)
				case !allowed && code != codes.PermissionDenied:
					t.Fatalf("%s got %s, want PermissionDenied", c.name, code)
				}
			})
		}
	}
}

// TestSiteScope: a case of another site is out of reach of every method
// that names it; an admin reaches every site.
func TestSiteScope(t *testing.T) {
	e := startJWT(t)
	other := e.createCaseAt("NORTH")
	all := []server.Role{server.RolePerfusionist, server.RoleAnesthesiologist, server.RoleReviewer, server.RoleIdentified, server.RoleDevice, server.RoleInterface}
	for _, method := range registeredMethods(t, e.env) {
		rule, _ := server.PolicyFor(method)
		if rule.Public || rule.Scope == server.ScopeNone {
			continue
		}
		t.Run(strings.TrimPrefix(method, "/perfusion.v1."), func(t *testing.T) {
			req, md := requestFor(t, method, other, "NORTH")
			if code := call(e.token("main-only", all, []string{"MAIN"}, 0), e.conn, method, md, req); code != codes.PermissionDenied {
				t.Fatalf("a MAIN user reaching NORTH got %s, want PermissionDenied", code)
			}
		})
	}
	admin := e.token("admin-1", []server.Role{server.RoleAdmin}, nil, 0)
	if _, err := e.cases.GetCase(admin, &pb.GetCaseRequest{CaseId: other}); err != nil {
		t.Fatalf("admin GetCase at NORTH: %v", err)
	}
	// A single-site caller's list is confined to its site; one with two
	// sites must name one.
	e.createCaseAt("MAIN")
	resp, err := e.cases.ListCases(e.token("p", all, []string{"MAIN"}, 0), &pb.ListCasesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.GetCases() {
		if c.GetSite() != "MAIN" {
			t.Fatalf("a MAIN user listed a %s case", c.GetSite())
		}
	}
	if len(resp.GetCases()) != 1 {
		t.Fatalf("listed %d cases, want 1", len(resp.GetCases()))
	}
	_, err = e.cases.ListCases(e.token("p", all, []string{"MAIN", "EAST"}, 0), &pb.ListCasesRequest{})
	wantCode(t, "two sites, no filter", err, codes.PermissionDenied)
}

// TestSigningNeedsRecentAuthentication: the same signer is refused with an
// old auth_time, or one in the future, and accepted with a fresh one.
func TestSigningNeedsRecentAuthentication(t *testing.T) {
	e := startJWT(t, func(c *server.Config) { c.SignAuthMaxAge = 5 * time.Minute })
	id := e.createCaseAt("MAIN")
	p := []server.Role{server.RolePerfusionist}
	if _, err := e.cases.CloseCase(e.token("perfusionist-1", p, []string{"MAIN"}, time.Hour), &pb.CloseCaseRequest{CaseId: id}); err != nil {
		t.Fatalf("close with an old authentication (only signing needs a recent one): %v", err)
	}
	sign := &pb.SignCaseRequest{CaseId: id, Meaning: pb.SignatureMeaning_SIGNATURE_MEANING_AUTHORED, SignerDisplayName: "P. Perfusionist"}
	_, err := e.cases.SignCase(e.token("perfusionist-1", p, []string{"MAIN"}, 10*time.Minute), sign)
	st := wantCode(t, "sign 10 minutes after authenticating", err, codes.Unauthenticated)
	if !strings.Contains(st.Message(), "sign in again") {
		t.Fatalf("message %q does not say what to do", st.Message())
	}
	_, err = e.cases.SignCase(e.token("perfusionist-1", p, []string{"MAIN"}, -10*time.Minute), sign)
	st = wantCode(t, "sign with an auth_time 10 minutes in the future", err, codes.Unauthenticated)
	if !strings.Contains(st.Message(), "in the future") {
		t.Fatalf("message %q does not say why", st.Message())
	}
	if _, err := e.cases.SignCase(e.token("perfusionist-1", p, []string{"MAIN"}, time.Minute), sign); err != nil {
		t.Fatalf("sign a minute after authenticating: %v", err)
	}
}

// TestServiceRoles: a device may stream samples and list its sources and
// nothing else (no RPC that returns patient data); an interface engine
// may render and deliver exports and nothing else; the retired
// integration role grants nothing and says what replaced it. Over a real
// connection, a device's answers carry none of the patient's identifiers,
// and both roles stay within their sites.
func TestServiceRoles(t *testing.T) {
	e := startJWT(t)
	allowed := func(role server.Role) []string {
		var out []string
		for _, m := range registeredMethods(t, e.env) {
			if r, _ := server.PolicyFor(m); !r.Public && allowedFor(r, []server.Role{role}) {
				out = append(out, strings.TrimPrefix(m, "/perfusion.v1."))
			}
		}
		return out
	}
	for role, want := range map[server.Role][]string{
		server.RoleDevice: {"ChartingService/ListSources", "ChartingService/StreamSamples"},
		server.RoleInterface: {"ExportService/ListDeliveries", "ExportService/RenderDocument", "ExportService/RenderFHIR", "ExportService/RenderHL7", "ExportService/RetryDelivery", "ExportService/SupersedeDelivery",
			"InboundService/SubmitAppointment"},
		server.RetiredRoleIntegration: nil,
	} {
		if got := allowed(role); !slices.Equal(got, want) {
			t.Errorf("%s may call %v, want exactly %v", role, got, want)
		}
	}

	main, north := e.createCaseAt("MAIN"), e.createCaseAt("NORTH")
	device := e.token("gateway-hlm-1", []server.Role{server.RoleDevice}, []string{"MAIN"}, 0)
	ss, err := e.charting.StreamSamples(device)
	if err != nil {
		t.Fatal(err)
	}
	var answers []proto.Message
	ss.Send(openMsg(main, "hlm-1"))
	opened, err := ss.Recv()
	if err != nil {
		t.Fatalf("device opening a MAIN case: %v", err)
	}
	answers = append(answers, opened)
	ss.Send(batchMsg(flowBatch("hlm-1", 1, time.Now().Add(-time.Minute).UnixMilli(), 10)))
	ack, err := ss.Recv()
	if err != nil {
		t.Fatalf("device batch: %v", err)
	}
	answers = append(answers, ack)
	ss.CloseSend()
	srcs, err := e.charting.ListSources(device, &pb.ListSourcesRequest{CaseId: main})
	if err != nil || len(srcs.GetSources()) != 1 {
		t.Fatalf("device ListSources: %v, %v", srcs, err)
	}
	answers = append(answers, srcs)
	for _, a := range answers {
		text := prototext.Format(a)
		for _, phi := range []string{testMRN, testFamily, "1961-04-02", "Alex", "latex"} {
			if strings.Contains(text, phi) {
				t.Fatalf("a device's answer carries patient data %q: %s", phi, text)
			}
		}
	}
	_, err = e.cases.GetCase(device, &pb.GetCaseRequest{CaseId: main})
	wantCode(t, "device GetCase", err, codes.PermissionDenied)
	_, err = e.charting.ListSources(device, &pb.ListSourcesRequest{CaseId: north})
	wantCode(t, "MAIN device listing a NORTH case's sources", err, codes.PermissionDenied)
	other, err := e.charting.StreamSamples(device)
	if err != nil {
		t.Fatal(err)
	}
	other.Send(openMsg(north, "hlm-1"))
	_, err = other.Recv()
	wantCode(t, "MAIN device streaming into a NORTH case", err, codes.PermissionDenied)

	engine := e.token("ehr-engine", []server.Role{server.RoleInterface}, []string{"MAIN"}, 0)
	ex := pb.NewExportServiceClient(e.conn)
	_, err = ex.RenderHL7(engine, &pb.RenderHL7Request{CaseId: north})
	wantCode(t, "MAIN interface engine rendering a NORTH case", err, codes.PermissionDenied)
	_, err = ex.ListDeliveries(engine, &pb.ListDeliveriesRequest{Site: "NORTH"})
	wantCode(t, "MAIN interface engine listing NORTH deliveries", err, codes.PermissionDenied)
	_, err = e.cases.GetCase(engine, &pb.GetCaseRequest{CaseId: main})
	wantCode(t, "interface GetCase", err, codes.PermissionDenied)

	_, err = ex.ListDeliveries(e.token("old-engine", []server.Role{server.RetiredRoleIntegration}, []string{"MAIN"}, 0), &pb.ListDeliveriesRequest{})
	st := wantCode(t, "a token with the retired integration role", err, codes.PermissionDenied)
	if !strings.Contains(st.Message(), `"device"`) || !strings.Contains(st.Message(), `"interface"`) {
		t.Fatalf("the refusal does not name the roles that replace integration: %q", st.Message())
	}
}

var updateREADME = flag.Bool("update-readme", false, "rewrite the README's generated role × RPC table from the policy")

// The generated table sits between these lines of the README.
const (
	readmeTableBegin = "<!-- role-table: generated from server/policy.go by `go test ./server -run TestREADMEMatchesPolicy -update-readme`; do not edit -->"
	readmeTableEnd   = "<!-- /role-table -->"
)

// TestREADMEMatchesPolicy: the README's role × RPC table is the one the
// policy gives; -update-readme rewrites it.
func TestREADMEMatchesPolicy(t *testing.T) {
	e := start(t, sqliteBackend(t))
	columns := []caller{
		{"perfusionist", []server.Role{server.RolePerfusionist}},
		{"anesthesiologist", []server.Role{server.RoleAnesthesiologist}},
		{"reviewer", []server.Role{server.RoleReviewer}},
		{"reviewer + identified", []server.Role{server.RoleReviewer, server.RoleIdentified}},
		{"device", []server.Role{server.RoleDevice}},
		{"interface", []server.Role{server.RoleInterface}},
		{"admin", []server.Role{server.RoleAdmin}},
	}
	var b strings.Builder
	b.WriteString("| RPC |")
	for _, c := range columns {
		b.WriteString(" `" + strings.ReplaceAll(c.name, " + ", "` + `") + "` |")
	}
	b.WriteString(" confined to |\n|---|")
	for range columns {
		b.WriteString(":-:|")
	}
	b.WriteString("---|\n")
	scopes := map[server.Scope]string{server.ScopeNone: "—", server.ScopeCase: "the case's site", server.ScopeSite: "the named site", server.ScopeList: "one of the caller's sites"}
	for _, m := range registeredMethods(t, e) {
		r, _ := server.PolicyFor(m)
		if r.Public {
			continue
		}
		b.WriteString("| `" + strings.TrimPrefix(m, "/perfusion.v1.") + "` |")
		for _, c := range columns {
			if allowedFor(r, c.roles) {
				b.WriteString(" ✓ |")
			} else {
				b.WriteString(" |")
			}
		}
		b.WriteString(" " + scopes[r.Scope] + " |\n")
	}
	want := readmeTableBegin + "\n" + b.String() + readmeTableEnd

	path := filepath.Join("..", "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	i, j := strings.Index(text, readmeTableBegin), strings.Index(text, readmeTableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no generated role table (the lines %q … %q)", readmeTableBegin, readmeTableEnd)
	}
	got := text[i : j+len(readmeTableEnd)]
	if got == want {
		return
	}
	if *updateREADME {
		if err := os.WriteFile(path, []byte(text[:i]+want+text[j+len(readmeTableEnd):]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("the README's role table differs from the policy; run go test ./server -run TestREADMEMatchesPolicy -update-readme\n--- README\n%s\n--- policy\n%s", got, want)
}
