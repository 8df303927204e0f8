package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "perfusion/api/perfusion/v1"
	"perfusion/clients/perfusion"
)

// listFlag is a repeatable flag: each use adds one value, so a cannula or a
// prime fluid is one --cannula or --prime, which reads better in a shell
// history than one long comma-separated string.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// circuitFlags defines the circuit and prime flags shared by case create and
// case update. apply changes d only where a flag was set; a repeatable flag
// replaces the whole list it names (the cannulae, the prime components).
func circuitFlags(fs *flag.FlagSet) func(d *pb.CaseDetails, set func(string) bool) error {
	pump := enumFlag(fs, "pump", pb.PumpType(0), "arterial pump")
	reservoir := enumFlag(fs, "reservoir", pb.ReservoirType(0), "venous reservoir")
	oxy := fs.String("oxygenator", "", "oxygenator as MODEL[:LOT[:UDI]]")
	filter := fs.String("arterial-filter", "", "arterial line filter as MODEL[:LOT[:UDI]]")
	cardioplegia := fs.String("cardioplegia", "", "cardioplegia system, e.g. 'del Nido'")
	salvage := fs.Bool("cell-salvage", false, "a cell salvage device is set up")
	uf := fs.Bool("ultrafiltration", false, "ultrafiltration is set up")
	var cannulae, prime listFlag
	fs.Var(&cannulae, "cannula", "cannula as SITE:SIZE_FR[:MODEL]; repeat for each cannula")
	fs.Var(&prime, "prime", "prime fluid as NAME:ML; repeat for each fluid")
	rap := fs.Float64("rap", 0, "retrograde autologous priming volume removed, mL")
	return func(d *pb.CaseDetails, set func(string) bool) error {
		if d.Circuit == nil {
			d.Circuit = &pb.Circuit{}
		}
		if d.Prime == nil {
			d.Prime = &pb.Prime{}
		}
		c := d.Circuit
		if set("pump") {
			n, err := parseEnum(pb.PumpType(0).Descriptor(), "pump", *pump)
			if err != nil {
				return err
			}
			c.ArterialPump = pb.PumpType(n)
		}
		if set("reservoir") {
			n, err := parseEnum(pb.ReservoirType(0).Descriptor(), "reservoir", *reservoir)
			if err != nil {
				return err
			}
			c.Reservoir = pb.ReservoirType(n)
		}
		if set("oxygenator") {
			c.Oxygenator = component(*oxy)
		}
		if set("arterial-filter") {
			c.ArterialFilter = component(*filter)
		}
		if set("cardioplegia") {
			c.CardioplegiaSystem = *cardioplegia
		}
		if set("cell-salvage") {
			c.CellSalvage = *salvage
		}
		if set("ultrafiltration") {
			c.Ultrafiltration = *uf
		}
		if set("cannula") {
			c.Cannulae = nil
			for _, s := range cannulae {
				cn, err := cannula(s)
				if err != nil {
					return err
				}
				c.Cannulae = append(c.Cannulae, cn)
			}
		}
		if set("prime") {
			d.Prime.Components = nil
			for _, s := range prime {
				pc, err := primeComponent(s)
				if err != nil {
					return err
				}
				d.Prime.Components = append(d.Prime.Components, pc)
			}
		}
		if set("rap") {
			d.Prime.RapVolumeMl = *rap
		}
		return nil
	}
}

func component(s string) *pb.Component {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	parts := strings.SplitN(s, ":", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return &pb.Component{Model: strings.TrimSpace(parts[0]), Lot: strings.TrimSpace(parts[1]), Udi: strings.TrimSpace(parts[2])}
}

func cannula(s string) (*pb.Cannula, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || strings.TrimSpace(parts[0]) == "" {
		return nil, usagef("--cannula: want SITE:SIZE_FR[:MODEL], got %q", s)
	}
	size, err := strconv.ParseFloat(strings.TrimSpace(parts[1]), 64)
	if err != nil || size <= 0 {
		return nil, usagef("--cannula %q: size must be a positive number of French", s)
	}
	c := &pb.Cannula{Site: strings.TrimSpace(parts[0]), SizeFr: size}
	if len(parts) == 3 {
		c.Model = strings.TrimSpace(parts[2])
	}
	return c, nil
}

func primeComponent(s string) (*pb.PrimeComponent, error) {
	i := strings.LastIndex(s, ":")
	if i <= 0 {
		return nil, usagef("--prime: want NAME:ML, got %q", s)
	}
	ml, err := strconv.ParseFloat(strings.TrimSpace(s[i+1:]), 64)
	if err != nil || ml <= 0 {
		return nil, usagef("--prime %q: volume must be a positive number of mL", s)
	}
	return &pb.PrimeComponent{Name: strings.TrimSpace(s[:i]), VolumeMl: ml}, nil
}

// primeTotal is the prime volume shown by case show: the sum of its
// components, as the proto defines it.
func primeTotal(p *pb.Prime) string {
	var total float64
	for _, c := range p.GetComponents() {
		total += c.GetVolumeMl()
	}
	if total == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f mL", total)
}

// printTeamAndCircuit adds the team, circuit and prime rows of case show.
func printTeamAndCircuit(row func(k, v string), d *pb.CaseDetails) {
	person := func(s *pb.StaffMember) string {
		if s.GetDisplayName() == "" && s.GetStaffId() == "" {
			return ""
		}
		return fmt.Sprintf("%s (%s)", s.GetDisplayName(), s.GetStaffId())
	}
	t := d.GetTeam()
	row("Surgeon", person(t.GetSurgeon()))
	row("Anesthesiologist", person(t.GetAnesthesiologist()))
	var ps []string
	for _, p := range t.GetPerfusionists() {
		ps = append(ps, person(p))
	}
	row("Perfusionists", strings.Join(ps, ", "))
	c := d.GetCircuit()
	if c.GetArterialPump() != pb.PumpType_PUMP_TYPE_UNSPECIFIED {
		row("Arterial pump", enumText(c.GetArterialPump()))
	}
	if c.GetReservoir() != pb.ReservoirType_RESERVOIR_TYPE_UNSPECIFIED {
		row("Reservoir", enumText(c.GetReservoir()))
	}
	row("Oxygenator", componentText(c.GetOxygenator()))
	row("Arterial filter", componentText(c.GetArterialFilter()))
	for i, cn := range c.GetCannulae() {
		row(fmt.Sprintf("Cannula %d", i+1), strings.TrimSpace(fmt.Sprintf("%s %s Fr %s", cn.GetSite(), fmtNum(cn.GetSizeFr()), cn.GetModel())))
	}
	row("Cardioplegia", c.GetCardioplegiaSystem())
	var setup []string
	if c.GetCellSalvage() {
		setup = append(setup, "cell salvage")
	}
	if c.GetUltrafiltration() {
		setup = append(setup, "ultrafiltration")
	}
	row("Set up", strings.Join(setup, ", "))
	var fluids []string
	for _, pc := range d.GetPrime().GetComponents() {
		fluids = append(fluids, fmt.Sprintf("%s %s mL", pc.GetName(), fmtNum(pc.GetVolumeMl())))
	}
	if len(fluids) > 0 {
		row("Prime", fmt.Sprintf("%s (%s)", primeTotal(d.GetPrime()), strings.Join(fluids, ", ")))
	}
	if v := d.GetPrime().GetRapVolumeMl(); v > 0 {
		row("RAP", fmtNum(v)+" mL")
	}
}

func componentText(c *pb.Component) string {
	if c == nil || c.GetModel() == "" {
		return ""
	}
	s := c.GetModel()
	if c.GetLot() != "" {
		s += ", lot " + c.GetLot()
	}
	if c.GetUdi() != "" {
		s += ", UDI " + c.GetUdi()
	}
	return s
}

// listCases reads one page, or with all every page, as one response (whose
// next-page token is then empty).
func listCases(ctx context.Context, c *perfusion.Client, req *pb.ListCasesRequest, all bool) (*pb.ListCasesResponse, error) {
	resp, err := c.ListCases(ctx, req)
	if err != nil || !all {
		return resp, err
	}
	for resp.GetNextPageToken() != "" {
		next := proto.Clone(req).(*pb.ListCasesRequest)
		next.PageToken = resp.GetNextPageToken()
		page, err := c.ListCases(ctx, next)
		if err != nil {
			return nil, err
		}
		resp.Cases = append(resp.Cases, page.GetCases()...)
		resp.NextPageToken = page.GetNextPageToken()
	}
	return resp, nil
}
