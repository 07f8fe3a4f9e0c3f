package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"portcullis/enforcement"
	"portcullis/gateway"
	"portcullis/gateway/tunnel"
)

// explainTunnel compiles the tunnel resource name of cfg, as the gateway
// does.
func explainTunnel(cfg *gateway.Config, name string) (*tunnel.Tunnel, error) {
	for _, tc := range cfg.Tunnels {
		if tc.Name == name {
			return tunnel.Compile(tc, enforcement.Defaults{MaxPostureAge: cfg.Posture.MaxAge.Std()})
		}
	}
	return nil, fmt.Errorf("no tunnel named %q", name)
}

// explainDest runs the destination check of an allowed CONNECT: it
// resolves dest with this host's resolver, as the gateway would, and
// says which address would be dialed or why none would. It dials
// nothing.
func explainDest(stdout, stderr io.Writer, cfg *gateway.Config, t *tunnel.Tunnel, dest string) int {
	tg, err := tunnel.ParseTarget(dest)
	if err != nil {
		fmt.Fprintf(stdout, "destination: refused\nreason:   %s\nmessage:  %v\n", tunnel.ReasonInvalidTarget, err)
		return 3
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, why := t.Resolve(ctx, net.DefaultResolver, listenerSelf(cfg), tg)
	if why != nil {
		fmt.Fprintf(stdout, "destination: refused\nreason:   %s\nmessage:  %s\n", why.Reason, why.Detail)
		return 3
	}
	fmt.Fprintf(stdout, "destination: allowed\naddresses: %v\n", addrs)
	return 0
}

// listenerSelf is the gateway's own listeners as the configuration names
// them (not their bound ports, which explain cannot know for port 0).
func listenerSelf(cfg *gateway.Config) func(netip.AddrPort) bool {
	var self []netip.AddrPort
	for _, l := range cfg.Listen {
		if ap, err := netip.ParseAddrPort(l.Address); err == nil {
			self = append(self, ap)
		}
	}
	if ap, err := netip.ParseAddrPort(cfg.Admin.Listen); err == nil {
		self = append(self, ap)
	}
	return func(ap netip.AddrPort) bool {
		for _, s := range self {
			if s.Port() == ap.Port() && (s.Addr() == ap.Addr() || s.Addr().IsUnspecified()) {
				return true
			}
		}
		return false
	}
}
