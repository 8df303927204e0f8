package perfusion

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// serversScheme names the resolver of a comma-separated server list. It
// is registered with each ClientConn only (grpc.WithResolvers), never
// globally.
const serversScheme = "perfusion-servers"

// roundRobin spreads calls over every server that is up; a server that
// goes down leaves the rotation until it reconnects.
const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// targetFor turns Dial's addr into a gRPC target and the options it
// needs. One address passes unchanged (gRPC resolves it, every DNS record
// included). Several, separated by commas, become a fixed list served by a
// resolver of this Client's own, with round_robin.
func targetFor(addr string) (string, []grpc.DialOption, error) {
	if !strings.Contains(addr, ",") {
		return addr, nil, nil
	}
	addrs, err := SplitServers(addr)
	if err != nil {
		return "", nil, err
	}
	var state resolver.State
	for _, a := range addrs {
		host, _, _ := net.SplitHostPort(a)
		// ServerName: TLS checks each server's certificate against its
		// own host name, not the list's.
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a, ServerName: host})
	}
	r := manual.NewBuilderWithScheme(serversScheme)
	r.InitialState(state)
	host, _, _ := net.SplitHostPort(addrs[0])
	return serversScheme + ":///" + host, []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(roundRobin),
	}, nil
}

// SplitServers splits a comma-separated list of host:port server
// addresses (spaces around commas allowed), refusing an empty element, an
// element without a port, and a list that names one server twice.
func SplitServers(list string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, errors.New("empty server address in the list")
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("server address %q: want host:port", a)
		}
		if seen[a] {
			return nil, fmt.Errorf("server address %q is listed twice", a)
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}
