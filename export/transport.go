package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"perfusion/hl7/mllp"
)

// MLLPTransport sends HL7 v2 messages over MLLP and maps the ACK:
// AA/CA delivered; AE/CE permanent (content error, not resent); AR/CR,
// ACK timeout, refused or dropped connection retried by the outbox.
type MLLPTransport struct {
	s *mllp.Sender
}

// NewMLLPTransport returns a transport for cfg. The sender makes one
// attempt per Send: retries and back-off belong to the outbox, whose state
// survives restarts.
func NewMLLPTransport(cfg mllp.SenderConfig) (*MLLPTransport, error) {
	cfg.MaxAttempts = 1
	s, err := mllp.NewSender(cfg)
	if err != nil {
		return nil, err
	}
	return &MLLPTransport{s: s}, nil
}

// Close closes the connection.
func (t *MLLPTransport) Close() error { return t.s.Close() }

// Send sends the delivery's messages in order (the ORU, then the MDM when
// documents are delivered), each after the one before was accepted, and
// classifies the first ACK that is not an accept (or the last one).
func (t *MLLPTransport) Send(ctx context.Context, r *Rendered) Outcome {
	out := t.send(ctx, r)
	for _, next := range r.Then {
		if out.Result != Delivered {
			break
		}
		out = t.send(ctx, next)
	}
	return out
}

func (t *MLLPTransport) send(ctx context.Context, r *Rendered) Outcome {
	ack, err := t.s.Send(ctx, r.Payload)
	out := Outcome{AckCode: string(ack.Code), AckText: ack.Text}
	var ce *mllp.ContentError
	var re *mllp.RejectedError
	switch {
	case err == nil:
		out.Result = Delivered
	case errors.As(err, &ce):
		out.Result, out.Err = Permanent, err
	case errors.As(err, &re):
		out.Result, out.Err = Retry, err
	default:
		out.Result, out.Err = Retry, err
	}
	return out
}

// FHIRTransport POSTs transaction Bundles to a FHIR server's base URL:
// 2xx delivered; 4xx other than 408 and 429 permanent; 5xx, 408, 429 and
// network errors retried by the outbox.
type FHIRTransport struct {
	base      string
	client    *http.Client
	header    http.Header
	tokenFile string
}

// UseBearerTokenFile makes every request carry "Authorization: Bearer" and
// the token in path, read again on each attempt so a token renewed by a
// sidecar (an OAuth client-credentials helper, a SMART backend-services
// agent) is picked up without a restart. A missing or empty file fails the
// attempt as retryable: the token may be about to appear. Call it before
// the transport is used.
func (t *FHIRTransport) UseBearerTokenFile(path string) { t.tokenFile = path }

// bearer reads the token file; the error names the file, never the token.
func (t *FHIRTransport) bearer() (string, error) {
	b, err := os.ReadFile(t.tokenFile)
	if err != nil {
		return "", fmt.Errorf("fhir: bearer token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \r\n\t") {
		return "", fmt.Errorf("fhir: bearer token file %s: empty or not a single token", t.tokenFile)
	}
	return tok, nil
}

// NewFHIRTransport returns a transport posting to baseURL with client (nil:
// a client with a 60 s timeout). header is added to every request (e.g.
// Authorization).
func NewFHIRTransport(baseURL string, client *http.Client, header http.Header) (*FHIRTransport, error) {
	if !strings.HasPrefix(baseURL, "http://") && !strings.HasPrefix(baseURL, "https://") {
		return nil, errors.New("export: FHIR base URL must be http or https")
	}
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	return &FHIRTransport{base: strings.TrimRight(baseURL, "/"), client: client, header: header.Clone()}, nil
}

// maxResponse bounds how much of a response is read.
const maxResponse = 1 << 20

// Send POSTs the Bundle and classifies the response.
func (t *FHIRTransport) Send(ctx context.Context, r *Rendered) Outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base, bytes.NewReader(r.Payload))
	if err != nil {
		return Outcome{Result: Permanent, Err: fmt.Errorf("fhir: request: %w", err)}
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	if t.tokenFile != "" {
		tok, err := t.bearer()
		if err != nil {
			return Outcome{Result: Retry, Err: err}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := t.client.Do(req)
	if err != nil {
		// The URL is configuration, not patient data; the body is never in
		// a transport error.
		return Outcome{Result: Retry, Err: fmt.Errorf("fhir: post: %w", err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	out := Outcome{AckCode: strconv.Itoa(resp.StatusCode), AckText: summarize(body)}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		out.Result = Delivered
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		out.Result, out.Err = Retry, fmt.Errorf("fhir: server answered %d", c)
	case c == http.StatusUnauthorized && t.tokenFile != "":
		// Most likely the token expired and its renewal is on the way: the
		// next attempt reads the file again.
		out.Result, out.Err = Retry, fmt.Errorf("fhir: server answered 401 to the bearer token; it is read again on the next attempt")
	default:
		out.Result, out.Err = Permanent, fmt.Errorf("fhir: server refused the bundle (%d)", c)
	}
	return out
}

// summarize keeps what identifies the outcome and nothing a server may
// have echoed from the content: a transaction-response's entry statuses
// and locations, or an OperationOutcome's issue severities and codes.
func summarize(body []byte) string {
	var doc struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Response struct {
				Status   string `json:"status"`
				Location string `json:"location"`
			} `json:"response"`
		} `json:"entry"`
		Issue []struct {
			Severity string `json:"severity"`
			Code     string `json:"code"`
		} `json:"issue"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return ""
	}
	var parts []string
	for _, e := range doc.Entry {
		parts = append(parts, strings.TrimSpace(e.Response.Status+" "+e.Response.Location))
	}
	for _, i := range doc.Issue {
		parts = append(parts, i.Severity+":"+i.Code)
	}
	s := doc.ResourceType
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, "; ")
	}
	if len(s) > 4000 {
		s = s[:4000] + "…"
	}
	return s
}
