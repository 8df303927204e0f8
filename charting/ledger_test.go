package charting

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/google/uuid"
)

// chain builds n links over made-up content and returns links and content.
func chain(t *testing.T, n int) ([]Link, map[string]Content) {
	t.Helper()
	id := uuid.MustParse("6f1c2a52-35a1-4c5e-9d0e-3d7a0f3f2b10")
	at := time.Date(2026, 5, 1, 9, 30, 0, 123456789, time.UTC)
	var head Head
	var links []Link
	content := map[string]Content{}
	for i := 0; i < n; i++ {
		kind, ref := LinkEntry, uuid.NewSHA1(id, []byte{byte(i)}).String()
		if i == 0 {
			kind, ref = LinkCaseCreated, ""
		}
		d := sha256.Sum256([]byte{byte(i)})
		l := NextLink(id, head, kind, ref, "actor", "", at.Add(time.Duration(i)*time.Second), d)
		links = append(links, l)
		content[ContentKey(kind, ref)] = Content{Kind: kind, Ref: ref, Digest: d}
		head = Head{Seq: l.Seq, Hash: l.Hash}
	}
	return links, content
}

func TestLinkHashIsStableAndCoversEveryField(t *testing.T) {
	links, _ := chain(t, 2)
	l := links[1]
	d := sha256.Sum256([]byte{1})
	if l.ComputeHash(d) != l.Hash {
		t.Fatal("hash does not recompute")
	}
	// Nanoseconds beyond the record's precision do not change the hash,
	// since stores keep microseconds.
	m := l
	m.RecordedAt = m.RecordedAt.Add(300 * time.Nanosecond)
	if m.ComputeHash(d) != l.Hash {
		t.Fatal("sub-microsecond time changed the hash")
	}
	mutations := map[string]func(*Link){
		"case":     func(x *Link) { x.CaseID = uuid.New() },
		"seq":      func(x *Link) { x.Seq++ },
		"kind":     func(x *Link) { x.Kind = LinkCorrection },
		"ref":      func(x *Link) { x.Ref += "x" },
		"actor":    func(x *Link) { x.Actor = "other" },
		"reason":   func(x *Link) { x.Reason = "r" },
		"time":     func(x *Link) { x.RecordedAt = x.RecordedAt.Add(time.Microsecond) },
		"previous": func(x *Link) { x.PrevHash[0] ^= 1 },
	}
	for name, mutate := range mutations {
		x := l
		mutate(&x)
		if x.ComputeHash(d) == l.Hash {
			t.Errorf("changing the %s does not change the hash", name)
		}
	}
	d[31] ^= 1
	if l.ComputeHash(d) == l.Hash {
		t.Error("changing the content does not change the hash")
	}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(links []Link, c map[string]Content, in *VerifyInput)
		seq     int64
		problem Problem
	}{
		{"intact", func([]Link, map[string]Content, *VerifyInput) {}, 0, ""},
		{"content altered", func(l []Link, c map[string]Content, _ *VerifyInput) {
			k := ContentKey(l[3].Kind, l[3].Ref)
			x := c[k]
			x.Digest[0] ^= 1
			c[k] = x
		}, 4, ProblemContentAltered},
		{"content missing", func(l []Link, c map[string]Content, _ *VerifyInput) { delete(c, ContentKey(l[2].Kind, l[2].Ref)) }, 3, ProblemContentMissing},
		{"content unreadable", func(l []Link, c map[string]Content, _ *VerifyInput) {
			k := ContentKey(l[2].Kind, l[2].Ref)
			x := c[k]
			x.Unreadable = ErrNotFound
			c[k] = x
		}, 3, ProblemContentUnreadable},
		{"stored hash edited", func(l []Link, _ map[string]Content, _ *VerifyInput) { l[1].Hash[5] ^= 1 }, 2, ProblemContentAltered},
		{"link removed", func(l []Link, _ map[string]Content, in *VerifyInput) { in.Links = append(l[:2:2], l[3:]...) }, 4, ProblemChainBroken},
		{"uncovered", func(_ []Link, c map[string]Content, _ *VerifyInput) {
			c["entry:extra"] = Content{Kind: LinkEntry, Ref: "extra"}
		}, 0, ProblemUncoveredContent},
		{"head behind", func(_ []Link, _ map[string]Content, in *VerifyInput) { in.Head.Seq-- }, 4, ProblemHeadMismatch},
		{"status edited", func(_ []Link, _ map[string]Content, in *VerifyInput) { in.Status = StatusSigned }, 5, ProblemHeadMismatch},
		{"signature off chain", func(_ []Link, _ map[string]Content, in *VerifyInput) {
			in.Signatures = []Signature{{Number: 6, CoversSeq: 5}}
		}, 5, ProblemHeadMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			links, content := chain(t, 5)
			in := VerifyInput{Status: StatusInProgress, Head: Head{Seq: 5, Hash: links[4].Hash}, Links: links, Content: content}
			tc.mutate(links, content, &in)
			res := Verify(in)
			if tc.problem == "" {
				if res.Bad != nil || res.LinksVerified != 5 || res.Head != links[4].Hash {
					t.Fatalf("intact chain: %+v", res)
				}
				return
			}
			if res.Bad == nil {
				t.Fatal("verification passed")
			}
			if res.Bad.Problem != tc.problem || res.Bad.Seq != tc.seq {
				t.Fatalf("got %+v, want %s at %d", *res.Bad, tc.problem, tc.seq)
			}
		})
	}
}

func TestSampleDigestCoversEverySample(t *testing.T) {
	s := []Series{{Channel: "pump_flow", TimesMs: []int64{1000, 2000}, Values: []float64{4.1, 4.2}}}
	base := SampleDigest("hlm", 1, s)
	variants := map[string]func() Hash{
		"source":  func() Hash { return SampleDigest("hlm2", 1, s) },
		"seq":     func() Hash { return SampleDigest("hlm", 2, s) },
		"value":   func() Hash { c := s[0]; c.Values = []float64{4.1, 4.3}; return SampleDigest("hlm", 1, []Series{c}) },
		"time":    func() Hash { c := s[0]; c.TimesMs = []int64{1000, 2001}; return SampleDigest("hlm", 1, []Series{c}) },
		"invalid": func() Hash { c := s[0]; c.Invalid = []bool{false, true}; return SampleDigest("hlm", 1, []Series{c}) },
		"channel": func() Hash { c := s[0]; c.Channel = "pump_speed"; return SampleDigest("hlm", 1, []Series{c}) },
	}
	for name, f := range variants {
		if f() == base {
			t.Errorf("changing the %s does not change the digest", name)
		}
	}
	if SampleDigest("hlm", 1, s) != base {
		t.Error("digest is not deterministic")
	}
}

func TestEntryDigestIgnoresTimeZoneAndNanoseconds(t *testing.T) {
	at := time.Date(2026, 5, 1, 9, 30, 0, 123456000, time.UTC)
	e := Entry{ID: uuid.New(), CaseID: uuid.New(), Kind: EntryNote, OccurredAt: at, RecordedAt: at, Author: "a", Detail: EntryDetail{Note: &Note{Text: "x"}}}
	f := e
	f.OccurredAt = at.In(time.FixedZone("CET", 3600)).Add(999)
	if DigestEntry(e) != DigestEntry(f) {
		t.Fatal("the same instant in another zone hashes differently")
	}
	f.Detail = EntryDetail{Note: &Note{Text: "y"}}
	if DigestEntry(e) == DigestEntry(f) {
		t.Fatal("note text not covered")
	}
}

func TestParseHashRejectsWrongLengths(t *testing.T) {
	good := sha256.Sum256(nil)
	for _, in := range []string{"", "ab", Hash(good).String() + "00", Hash(good).String()[:63], "zz" + Hash(good).String()[2:]} {
		if _, err := ParseHash(in); err == nil {
			t.Errorf("ParseHash(%q) accepted", in)
		}
	}
	if h, err := ParseHash(Hash(good).String()); err != nil || h != Hash(good) {
		t.Fatalf("round trip: %v", err)
	}
}
