package export

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"perfusion/charting"
	"perfusion/export/document"
	"perfusion/store"
)

// DocumentContentType is the media type of the rendered record.
const DocumentContentType = "application/pdf"

// Document is a rendered record: the PDF and what it stands for.
type Document struct {
	PDF []byte
	// Version is the signature's or addendum's ledger sequence, 0 for a
	// draft.
	Version int64
	// Draft is set when the case is not signed: every page says DRAFT.
	Draft bool
	// Head is the ledger link the document shows and can be verified
	// against.
	Head charting.Link
}

// RenderDocument renders the perfusion record of (case, version) as a PDF
// (package document). A signed case renders as the version asked for (0:
// the latest), exactly as Load reads it for the messages; a case that is
// not signed yet renders, for version 0 only, as a DRAFT of the record as
// it stands. The bytes depend on the record alone, so a version renders
// the same every time.
func (r *Renderer) RenderDocument(ctx context.Context, caseID uuid.UUID, version int64) (*Document, error) {
	in, err := r.documentInput(ctx, caseID, version)
	if err != nil {
		return nil, err
	}
	b, err := document.Render(in)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrContent, err)
	}
	return &Document{PDF: b, Version: in.Version, Draft: in.Draft(), Head: in.Head}, nil
}

// DocumentOf renders a loaded signed version; head is its own ledger link
// (the link at v.Number). Delivery renders through it.
func (r *Renderer) DocumentOf(v *Version, head charting.Link) ([]byte, error) {
	b, err := document.Render(r.input(v, head))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrContent, err)
	}
	return b, nil
}

func (r *Renderer) input(v *Version, head charting.Link) *document.Input {
	trends, period := r.trends(v)
	return &document.Input{Case: v.Case, Version: v.Number, Head: head, All: v.All, Trends: trends, PeriodMs: period,
		Metrics: charting.ComputeMetricsWith(v.Case, v.All, v.Series, r.mcfg, r.cat), Catalogue: r.cat, Location: r.hl7.Location}
}

func (r *Renderer) documentInput(ctx context.Context, caseID uuid.UUID, version int64) (*document.Input, error) {
	var draft *Version
	var head charting.Link
	err := r.b.Snapshot(ctx, func(ctx context.Context, rd store.Reader) error {
		c, err := rd.GetCase(ctx, caseID)
		if err != nil {
			return err
		}
		if c.Status == charting.StatusSigned {
			return nil // Load below, which reads its own snapshot
		}
		if version != 0 {
			return ErrNotAVersion // an unsigned case has no versions yet
		}
		draft, head, err = loadDraft(ctx, rd, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("export: load case for the document: %w", err)
	}
	if draft != nil {
		return r.input(draft, head), nil
	}
	v, err := r.Load(ctx, caseID, version)
	if err != nil {
		return nil, err
	}
	links, err := r.b.Links(ctx, caseID, v.Number-1, 1)
	if err != nil {
		return nil, fmt.Errorf("export: read the version's ledger link: %w", err)
	}
	if len(links) != 1 || links[0].Seq != v.Number {
		return nil, fmt.Errorf("export: ledger link %d of the case is missing", v.Number)
	}
	return r.input(v, links[0]), nil
}

// loadDraft reads an unsigned case as it stands, as Load reads a version:
// every entry, the device data within the case's device window, and the
// latest ledger link as the head the draft shows.
func loadDraft(ctx context.Context, rd store.Reader, c *charting.Case) (*Version, charting.Link, error) {
	var head charting.Link
	if c.Head.Seq > 0 {
		links, err := rd.Links(ctx, c.ID, c.Head.Seq-1, 1)
		if err != nil {
			return nil, head, err
		}
		if len(links) == 1 {
			head = links[0]
		}
	}
	all, err := rd.Entries(ctx, c.ID)
	if err != nil {
		return nil, head, err
	}
	series, err := caseSeries(ctx, rd, c)
	if err != nil {
		return nil, head, err
	}
	// A draft shows the identity as reconciled, as a signed version does.
	identity, err := applyIdentity(ctx, rd, c)
	if err != nil {
		return nil, head, err
	}
	return &Version{Case: c, At: head.RecordedAt, All: all, Current: charting.CurrentView(all, false), Series: series, Identity: identity}, head, nil
}
