package charting

import (
	"fmt"
	"slices"
)

// Problem is what verification found wrong.
type Problem string

// Verification problems.
const (
	ProblemContentAltered    Problem = "content_altered"
	ProblemContentMissing    Problem = "content_missing"
	ProblemChainBroken       Problem = "chain_broken"
	ProblemUncoveredContent  Problem = "uncovered_content"
	ProblemHeadMismatch      Problem = "head_mismatch"
	ProblemContentUnreadable Problem = "content_unreadable"
)

// BadLink is the first failure verification found.
type BadLink struct {
	Seq     int64
	Kind    LinkKind
	Ref     string
	Problem Problem
	Detail  string // no patient data
}

// Content is one stored datum, re-read and re-encoded by the store.
type Content struct {
	// Kind is the link kind that must cover the datum.
	Kind LinkKind
	// Ref is the datum's ledger ref.
	Ref string
	// Digest is the digest of its canonical encoding, recomputed from what
	// is stored now.
	Digest Hash
	// Unreadable is set when the stored datum could not be decoded.
	Unreadable error
}

// VerifyInput is everything stored for one case.
type VerifyInput struct {
	Status     Status
	Head       Head
	Signatures []Signature
	Links      []Link // in sequence order
	Content    map[string]Content
}

// VerifyResult is the outcome of a verification.
type VerifyResult struct {
	LinksVerified int64
	Head          Hash
	Bad           *BadLink // nil when everything verified
}

// Verify re-computes the hash chain from the first link using the content
// digests the store recomputed, and reports the first problem: a link whose
// content changed or is missing, a broken chain, content no link covers, or a
// case head or signature that does not match the chain.
func Verify(in VerifyInput) VerifyResult {
	var res VerifyResult
	var prev Hash
	used := make(map[string]bool, len(in.Content))
	hashAt := make(map[int64]Hash, len(in.Links))
	for i, l := range in.Links {
		bad := func(p Problem, format string, args ...any) VerifyResult {
			res.Bad = &BadLink{Seq: l.Seq, Kind: l.Kind, Ref: l.Ref, Problem: p, Detail: fmt.Sprintf(format, args...)}
			return res
		}
		if l.Seq != int64(i)+1 {
			return bad(ProblemChainBroken, "expected link %d, found %d", i+1, l.Seq)
		}
		if l.PrevHash != prev {
			return bad(ProblemChainBroken, "previous hash does not match link %d", l.Seq-1)
		}
		key := ContentKey(l.Kind, l.Ref)
		c, ok := in.Content[key]
		if !ok {
			return bad(ProblemContentMissing, "the %s this link covers is not stored", l.Kind)
		}
		used[key] = true
		if c.Unreadable != nil {
			return bad(ProblemContentUnreadable, "stored %s cannot be decoded: %v", l.Kind, c.Unreadable)
		}
		if c.Kind != l.Kind {
			return bad(ProblemContentAltered, "link records a %s but the stored datum is a %s", l.Kind, c.Kind)
		}
		if got := l.ComputeHash(c.Digest); got != l.Hash {
			return bad(ProblemContentAltered, "stored content or link header no longer hashes to the link's hash")
		}
		prev = l.Hash
		hashAt[l.Seq] = l.Hash
		res.LinksVerified++
	}
	res.Head = prev
	if b := uncovered(in.Content, used); b != nil {
		res.Bad = b
		return res
	}
	if in.Head.Seq != int64(len(in.Links)) || in.Head.Hash != prev {
		res.Bad = &BadLink{Seq: in.Head.Seq, Problem: ProblemHeadMismatch, Detail: "the case's recorded ledger head is not the end of the chain"}
		return res
	}
	if want := statusFromLinks(in.Links); in.Status != want {
		res.Bad = &BadLink{Seq: in.Head.Seq, Problem: ProblemHeadMismatch,
			Detail: fmt.Sprintf("the case's status is %s but its ledger says %s", in.Status, want)}
		return res
	}
	for _, s := range in.Signatures {
		if h, ok := hashAt[s.CoversSeq]; !ok || h != s.CoversHash {
			res.Bad = &BadLink{Seq: s.CoversSeq, Kind: LinkSignature, Ref: fmt.Sprint(s.Number), Problem: ProblemHeadMismatch,
				Detail: "a signature covers a head that is not on the chain"}
			return res
		}
	}
	return res
}

func uncovered(content map[string]Content, used map[string]bool) *BadLink {
	var keys []string
	for k := range content {
		if !used[k] {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	c := content[keys[0]]
	return &BadLink{Kind: c.Kind, Ref: c.Ref, Problem: ProblemUncoveredContent,
		Detail: fmt.Sprintf("%d stored datum(s) are covered by no link", len(keys))}
}

// statusFromLinks derives the lifecycle state the ledger proves, so a status
// edited behind the service's back (a signed case reopened) is detected.
func statusFromLinks(links []Link) Status {
	st := StatusPlanned
	for _, l := range links {
		switch l.Kind {
		case LinkSignature:
			st = StatusSigned
		case LinkCaseClosed:
			if st != StatusSigned {
				st = StatusClosed
			}
		case LinkEntry, LinkCorrection, LinkSamples:
			if st == StatusPlanned {
				st = StatusInProgress
			}
		}
	}
	return st
}
