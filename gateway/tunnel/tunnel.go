package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"portcullis/enforcement"
)

// Tunnel is one compiled tunnel resource. It never changes after
// [Compile] returns; a reload compiles a new one.
type Tunnel struct {
	Name        string
	Hosts       []string
	Policy      *enforcement.Policy
	Remediation string
	MaxPerUser  int
	Dial        time.Duration
	Idle        time.Duration
	Max         time.Duration

	dest  rules
	allow AllowConfig
}

// Compile builds a tunnel from a validated configuration entry, compiling
// its policy with the same [enforcement.Compile] as HTTP resources.
func Compile(c Config, d enforcement.Defaults) (*Tunnel, error) {
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	pol, err := enforcement.Compile(c.Policy, d)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	t := &Tunnel{Name: c.Name, Hosts: c.Hosts, Policy: pol, Remediation: c.Remediation, MaxPerUser: c.MaxPerUser,
		Dial: c.Timeouts.Dial.Std(), Idle: c.Timeouts.Idle.Std(), Max: c.Timeouts.Max.Std(), allow: c.Allow}
	for _, s := range c.Destinations {
		r, err := parseRule(s)
		if err != nil {
			return nil, err
		}
		t.dest = append(t.dest, r)
	}
	return t, nil
}

// Reason codes of tunnel refusals that are not policy decisions. They are
// stable: Proxy-Status details, problem documents, decision records and
// the portcullis_tunnel_denials_total metric carry them.
const (
	ReasonInvalidTarget       enforcement.Reason = "tunnel.invalid_target"
	ReasonProtocolUnsupported enforcement.Reason = "tunnel.protocol_not_supported"
	ReasonDestinationDenied   enforcement.Reason = "tunnel.destination_denied"
	ReasonDestinationReserved enforcement.Reason = "tunnel.destination_reserved"
	ReasonDNSError            enforcement.Reason = "tunnel.dns_error"
	ReasonConnectFailed       enforcement.Reason = "tunnel.connect_failed"
	ReasonUserLimit           enforcement.Reason = "tunnel.user_limit"
)

// Refusal is why a tunnel was not opened although policy allowed its
// client: the status, the RFC 9209 error type, the reason code and a
// message safe to show (no internal error text).
type Refusal struct {
	Status     int
	ProxyError string // Proxy-Status error type, e.g. "destination_ip_prohibited"
	Reason     enforcement.Reason
	Detail     string
	Err        error // the cause, for the gateway's log only; may be nil
}

func (r *Refusal) Error() string { return "tunnel: " + string(r.Reason) }

// Unwrap returns the cause.
func (r *Refusal) Unwrap() error { return r.Err }

// Resolver looks host names up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Resolve turns a target into the addresses the tunnel may dial, in the
// resolver's order, or refuses it. The policy is decided on addresses,
// never on the name alone: a target given by address must fall in an
// address destination; a target given by name must match a name
// destination, or each of its addresses an address destination. Every
// address must also pass the deny list (loopback, link-local, metadata,
// unspecified, multicast, unless allowed) and must not be one of the
// gateway's own listeners (self, which may be nil). One address that
// fails refuses the whole target, since a name that resolves to an
// internal address beside a public one is how DNS rebinding starts.
// The caller dials exactly these addresses and never the name again.
func (t *Tunnel) Resolve(ctx context.Context, res Resolver, self func(netip.AddrPort) bool, tg Target) ([]netip.AddrPort, *Refusal) {
	byName := !tg.IsAddr() && t.dest.allowsName(tg.Name, tg.Port)
	var addrs []netip.Addr
	if tg.IsAddr() {
		addrs = []netip.Addr{tg.Addr}
	} else {
		if !byName && !t.dest.hasAddressRule(tg.Port) {
			return nil, denied(tg)
		}
		var err error
		addrs, err = res.LookupNetIP(ctx, "ip", tg.Name)
		if err != nil || len(addrs) == 0 {
			return nil, &Refusal{Status: 502, ProxyError: "dns_error", Reason: ReasonDNSError,
				Detail: "The destination's name could not be resolved.", Err: err}
		}
	}
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		ap := netip.AddrPortFrom(a, tg.Port)
		if why := t.reserved(a); why != "" || self != nil && self(ap) {
			if why == "" {
				why = "the gateway itself"
			}
			return nil, &Refusal{Status: 403, ProxyError: "destination_ip_prohibited", Reason: ReasonDestinationReserved,
				Detail: "The destination resolves to an address tunnels may not reach (" + why + ")."}
		}
		if !byName && !t.dest.allowsAddr(a, tg.Port) {
			return nil, denied(tg)
		}
		out = append(out, ap)
	}
	return out, nil
}

func denied(tg Target) *Refusal {
	return &Refusal{Status: 403, ProxyError: "destination_ip_prohibited", Reason: ReasonDestinationDenied,
		Detail: "This tunnel does not lead to " + tg.String() + "."}
}

func (rs rules) hasAddressRule(p uint16) bool {
	for i := range rs {
		if rs[i].prefix.IsValid() && rs[i].port(p) {
			return true
		}
	}
	return false
}

var (
	metadataV4 = netip.MustParseAddr("169.254.169.254")
	metadataV6 = netip.MustParseAddr("fd00:ec2::254")
	thisNet    = netip.MustParsePrefix("0.0.0.0/8")
	broadcast  = netip.MustParseAddr("255.255.255.255")
)

// reserved names the deny-list entry a falls under, or "" when none does
// or the tunnel allows it.
func (t *Tunnel) reserved(a netip.Addr) string {
	switch {
	case a.IsUnspecified() || thisNet.Contains(a):
		return "unspecified"
	case a.IsMulticast() || a == broadcast:
		return "multicast or broadcast"
	case a == metadataV4 || a == metadataV6:
		if !t.allow.Metadata {
			return "cloud metadata"
		}
	case a.IsLoopback():
		if !t.allow.Loopback {
			return "loopback"
		}
	case a.IsLinkLocalUnicast():
		if !t.allow.LinkLocal {
			return "link-local"
		}
	}
	return ""
}

// DialAddrs connects to the first of addrs that answers, each within the
// tunnel's dial timeout. It dials addresses, never names.
func (t *Tunnel) DialAddrs(ctx context.Context, addrs []netip.AddrPort) (net.Conn, *Refusal) {
	var d net.Dialer
	var last error
	for _, ap := range addrs {
		dctx, cancel := context.WithTimeout(ctx, t.Dial)
		c, err := d.DialContext(dctx, "tcp", ap.String())
		cancel()
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	r := &Refusal{Status: 502, ProxyError: "destination_unavailable", Reason: ReasonConnectFailed,
		Detail: "The destination did not accept the connection.", Err: last}
	var ne net.Error
	switch {
	case errors.As(last, &ne) && ne.Timeout():
		r.Status, r.ProxyError = 504, "connection_timeout"
	case errors.Is(last, syscall.ECONNREFUSED):
		r.ProxyError = "connection_refused"
	}
	return nil, r
}
