package inbound_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"perfusion/store"
	"perfusion/store/postgres/pgtest"
	"perfusion/store/sqlite/sqlitetest"
)

// BenchmarkInboundMLLP sends messages one at a time over one MLLP
// connection, as an interface engine does (the next only after the ACK),
// each journaled durably before its ACK:
//
//   - adt: ADT^A08 for patients no case names (most of a hospital's ADT
//     feed): journal row and patient index in one commit;
//   - siu: SIU^S12 planning a case per message (a case, its details and
//     ledger links, then the journal row and booking);
//   - mixed: nine ADT^A08 to one SIU^S14 of a planned case.
//
// It reports messages per second over the whole run.
//
//	PERFUSION_TEST_DATABASE_URL=… go test ./hl7/inbound -run XXX -bench InboundMLLP -benchtime 2000x
func BenchmarkInboundMLLP(b *testing.B) {
	for _, be := range []struct {
		name string
		open func(testing.TB) store.Backend
	}{{"sqlite", func(t testing.TB) store.Backend { return sqlitetest.Open(t) }}, {"postgres", func(t testing.TB) store.Backend { return pgtest.Open(t) }}} {
		for _, kind := range []string{"adt", "siu", "mixed"} {
			b.Run(be.name+"/"+kind, func(b *testing.B) {
				e := newEnv(b, be.open(b), quiet)
				c := e.dial()
				start, _ := startAt(7, 30)
				// Messages are built before the clock starts.
				msgs := make([]string, b.N)
				if kind == "mixed" {
					a, _ := c.send(e.fixture("siu_s12.hl7", vars{"START": start, "APPT": "MIX"}))
					if a.Code != "AA" {
						b.Fatalf("setup: %+v", a)
					}
				}
				for i := range msgs {
					switch {
					case kind == "adt" || kind == "mixed" && i%10 != 9:
						msgs[i] = e.fixture("adt_a08.hl7", vars{"MRN": fmt.Sprintf("B-%07d", i), "VISIT": fmt.Sprintf("BV-%07d", i)})
					case kind == "siu":
						msgs[i] = e.fixture("siu_s12.hl7", vars{"START": start, "APPT": fmt.Sprintf("BA-%07d", i), "ROOM": fmt.Sprintf("CVOR-%d", i%10+1),
							"MRN": fmt.Sprintf("B-%07d", i), "VISIT": fmt.Sprintf("BV-%07d", i)})
					default:
						m := e.fixture("siu_s12.hl7", vars{"START": start, "APPT": "MIX"})
						m = strings.Replace(m, "SIU^S12^SIU_S12", "SIU^S14^SIU_S12", 1)
						msgs[i] = strings.Replace(m, "Coronary artery bypass graft x3", fmt.Sprintf("CABG variant %d", i), 1)
					}
				}
				b.ResetTimer()
				t0 := time.Now()
				for _, m := range msgs {
					if a, _ := c.send(m); a.Code != "AA" {
						b.Fatalf("ACK %+v", a)
					}
				}
				el := time.Since(t0)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			})
		}
	}
}
