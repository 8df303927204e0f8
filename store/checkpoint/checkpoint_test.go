package checkpoint

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"perfusion/charting"
)

func chain(id uuid.UUID, n int, salt string) []charting.Link {
	var links []charting.Link
	var head charting.Head
	for i := 0; i < n; i++ {
		l := charting.NextLink(id, head, charting.LinkEntry, salt+uuid.NewString(), "a", "", time.Unix(0, 0), charting.Hash{})
		links = append(links, l)
		head = charting.Head{Seq: l.Seq, Hash: l.Hash}
	}
	return links
}

// TestLogAnchorsAndChecks: checkpoints round-trip through the log with
// their signatures; a truncated or rewritten tail and a forged or foreign
// checkpoint are each refused.
func TestLogAnchorsAndChecks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(dir, "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := LoadOrCreateKey(filepath.Join(dir, "k.pem")); err != nil || !again.Equal(key) {
		t.Fatalf("key not read back: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "k.pem")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode().Perm())
	}
	log := NewLog(filepath.Join(dir, "cp.log"), NewSigner(key))
	id, other := uuid.New(), uuid.New()
	links := chain(id, 6, "")
	for _, n := range []int{3, 6} {
		if err := log.Anchor(ctx, id, charting.Head{Seq: int64(n), Hash: links[n-1].Hash}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Anchor(ctx, other, charting.Head{Seq: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	cps, err := log.Checkpoints(ctx, id)
	if err != nil || len(cps) != 2 {
		t.Fatalf("read %d checkpoints: %v", len(cps), err)
	}
	if bad := Check(links, cps); bad != nil {
		t.Fatalf("intact chain: %+v", *bad)
	}
	if bad := Check(links[:4], cps); bad == nil || bad.Seq != 6 || !strings.Contains(bad.Detail, "truncated") {
		t.Fatalf("truncated chain: %+v", bad)
	}
	// Rewritten from link 2 on: the rewritten chain is consistent but holds
	// other hashes at the anchored links; the first anchored one is named.
	rewritten := append(append([]charting.Link{}, links[:1]...), chain(id, 6, "x")[1:]...)
	if bad := Check(rewritten, cps); bad == nil || bad.Seq != 3 || bad.Problem != ProblemAnchorMismatch {
		t.Fatalf("rewritten chain: %+v", bad)
	}
	// A checkpoint edited in the log, or signed by another key, is refused.
	forged := cps[1]
	forged.Seq = 4
	if err := Verify(&forged, NewSigner(key).Public()); err == nil {
		t.Fatal("an edited checkpoint verified")
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := Read(log.Path(), otherKey.Public().(ed25519.PublicKey), id); err == nil {
		t.Fatal("checkpoints verified with another key")
	}
}
