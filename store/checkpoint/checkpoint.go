// Package checkpoint anchors case ledgers outside the database. A
// checkpoint states that a case's ledger had link seq with hash head at a
// time, signed with the server's ed25519 key, and is appended to a log file
// that can live on another volume or host than the database. Someone who can
// rewrite the database (delete a signature and the last links, set the
// case's head back) can make a chain that verifies on its own, but not one
// that holds a head the log anchored: verification against the log names
// the first anchored link the chain lost or changed.
package checkpoint

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

// ProblemAnchorMismatch: the chain lacks, or holds another hash at, a link a
// checkpoint anchored: its tail was truncated or rewritten.
const ProblemAnchorMismatch charting.Problem = "anchor_mismatch"

// Checkpoint is one signed statement of a case's ledger head.
type Checkpoint struct {
	CaseID uuid.UUID     `json:"case_id"`
	Seq    int64         `json:"seq"`
	Head   charting.Hash `json:"-"`
	At     time.Time     `json:"at"`
	// KeyID names the signing key: the first 8 bytes of SHA-256 of its
	// public key, in hex.
	KeyID string `json:"key_id"`
	Sig   []byte `json:"sig"`
}

// MarshalJSON writes the head as hex, like the API does.
func (c Checkpoint) MarshalJSON() ([]byte, error) {
	type plain Checkpoint
	return json.Marshal(struct {
		plain
		Head string `json:"head"`
	}{plain(c), c.Head.String()})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (c *Checkpoint) UnmarshalJSON(b []byte) error {
	type plain Checkpoint
	var w struct {
		plain
		Head string `json:"head"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	h, err := charting.ParseHash(w.Head)
	if err != nil {
		return fmt.Errorf("checkpoint head: %w", err)
	}
	*c = Checkpoint(w.plain)
	c.Head = h
	return nil
}

// message is what is signed. Its layout never changes: old logs must
// verify with new binaries.
func (c *Checkpoint) message() []byte {
	return []byte("perfusion-checkpoint/v1\n" + c.CaseID.String() + "\n" + strconv.FormatInt(c.Seq, 10) + "\n" +
		c.Head.String() + "\n" + c.At.UTC().Format(time.RFC3339Nano) + "\n")
}

// KeyID returns the id of a public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Signer signs checkpoints with one key.
type Signer struct {
	key ed25519.PrivateKey
	id  string
}

// NewSigner signs with key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, id: KeyID(key.Public().(ed25519.PublicKey))}
}

// Public returns the verifying key.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign makes the checkpoint of a case's head at a time.
func (s *Signer) Sign(caseID uuid.UUID, head charting.Head, at time.Time) Checkpoint {
	c := Checkpoint{CaseID: caseID, Seq: head.Seq, Head: head.Hash, At: at.UTC(), KeyID: s.id}
	c.Sig = ed25519.Sign(s.key, c.message())
	return c
}

// Verify checks a checkpoint's signature with pub.
func Verify(c *Checkpoint, pub ed25519.PublicKey) error {
	if c.KeyID != KeyID(pub) {
		return fmt.Errorf("checkpoint of case %s at link %d: signed by key %s, not %s", c.CaseID, c.Seq, c.KeyID, KeyID(pub))
	}
	if !ed25519.Verify(pub, c.message(), c.Sig) {
		return fmt.Errorf("checkpoint of case %s at link %d: bad signature", c.CaseID, c.Seq)
	}
	return nil
}

// LoadOrCreateKey reads an ed25519 private key (PKCS #8, PEM) from path,
// creating one (mode 0600) when the file does not exist.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, key, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("checkpoint key: generate: %w", gerr)
		}
		der, merr := x509.MarshalPKCS8PrivateKey(key)
		if merr != nil {
			return nil, fmt.Errorf("checkpoint key: %w", merr)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("checkpoint key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("checkpoint key: create %s: %w", path, err)
		}
		if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
			f.Close()
			return nil, fmt.Errorf("checkpoint key: write %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("checkpoint key: write %s: %w", path, err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("checkpoint key %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("checkpoint key %s: not an ed25519 key", path)
	}
	return key, nil
}

// Log is an append-only file of checkpoints, one JSON object a line.
type Log struct {
	path   string
	signer *Signer
	mu     sync.Mutex
}

// NewLog appends to, and reads, the file at path with signer's key.
func NewLog(path string, signer *Signer) *Log { return &Log{path: path, signer: signer} }

// Path returns the log's file.
func (l *Log) Path() string { return l.path }

// Anchor signs and appends the checkpoint of a case's head, synced to disk
// before it returns.
func (l *Log) Anchor(_ context.Context, caseID uuid.UUID, head charting.Head, at time.Time) error {
	c := l.signer.Sign(caseID, head, at)
	line, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	// O_APPEND: each line lands whole at the end, even with another
	// process appending (a second server sharing the log).
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("checkpoint log: %w", err)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint log: append: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("checkpoint log: sync: %w", err)
	}
	return f.Close()
}

// Checkpoints returns the log's checkpoints of a case, each signature
// checked with the log's key; an error names a line that is malformed or
// not signed by it.
func (l *Log) Checkpoints(_ context.Context, caseID uuid.UUID) ([]Checkpoint, error) {
	return Read(l.path, l.signer.Public(), caseID)
}

// Read returns the checkpoints of a case in the log file at path, in log
// order, each verified with pub. A missing file holds none.
func Read(path string, pub ed25519.PublicKey, caseID uuid.UUID) ([]Checkpoint, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint log: %w", err)
	}
	var out []Checkpoint
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var c Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return nil, fmt.Errorf("checkpoint log line %d: %w", n, err)
		}
		if c.CaseID != caseID {
			continue
		}
		if err := Verify(&c, pub); err != nil {
			return nil, fmt.Errorf("checkpoint log line %d: %w", n, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint log: %w", err)
	}
	return out, nil
}

// Check compares a case's ledger with its checkpoints: each anchored link
// must be on the chain with the anchored hash. It returns the first
// anchored link (lowest sequence) that is not, nil when all are.
func Check(links []charting.Link, cps []Checkpoint) *charting.BadLink {
	var worst *Checkpoint
	for i := range cps {
		c := &cps[i]
		ok := c.Seq == 0 || (c.Seq <= int64(len(links)) && links[c.Seq-1].Seq == c.Seq && links[c.Seq-1].Hash == c.Head)
		if !ok && (worst == nil || c.Seq < worst.Seq) {
			worst = c
		}
	}
	if worst == nil {
		return nil
	}
	bad := &charting.BadLink{Seq: worst.Seq, Problem: ProblemAnchorMismatch}
	if worst.Seq > int64(len(links)) {
		bad.Detail = fmt.Sprintf("a checkpoint of %s anchors link %d but the chain ends at link %d: its tail was truncated",
			worst.At.UTC().Format(time.RFC3339), worst.Seq, len(links))
		return bad
	}
	l := links[worst.Seq-1]
	bad.Kind, bad.Ref = l.Kind, l.Ref
	bad.Detail = fmt.Sprintf("a checkpoint of %s anchors link %d with another hash: the chain was rewritten at or before it",
		worst.At.UTC().Format(time.RFC3339), worst.Seq)
	return bad
}
