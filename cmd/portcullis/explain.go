package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"portcullis/certs"
	"portcullis/enforcement"
	"portcullis/gateway"
	"portcullis/gateway/tunnel"
	"portcullis/posture"
)

// cmdExplain dry-runs a decision with the same Compile and Decide the
// gateway uses, from flags and, with --state, the stored posture.
func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "portcullis.yaml", "configuration file")
	resName := fs.String("resource", "", "resource name (this or --tunnel is required)")
	tunName := fs.String("tunnel", "", "tunnel resource name: explain a CONNECT to --dest")
	dest := fs.String("dest", "", "with --tunnel: the CONNECT target, host:port")
	deviceID := fs.String("device", "", "device id from the certificate (none: no certificate)")
	caName := fs.String("ca", "", "device CA name (default: the only configured CA)")
	user := fs.String("user", "", "user id (login subject, or the certificate's user)")
	groups := fs.String("groups", "", "comma-separated groups of the user")
	method := fs.String("method", "GET", "request method")
	host := fs.String("host", "", "request host")
	path := fs.String("path", "/", "request path")
	stateDir := fs.String("state", "", "read posture and risk from this state directory")
	managed := fs.Bool("managed", true, "without --state: the device is managed")
	compliant := fs.String("compliant", "", "without --state: true, false or unknown (default: no posture record)")
	threat := fs.String("threat", "none", "without --state: none, low, medium, high, critical or unknown")
	age := fs.Duration("posture-age", 0, "without --state: how old the posture record is")
	risk := fs.String("risk", "", "without --state: the user's risk: low, medium or high")
	revoked := fs.String("revoked", "", "without --state: comma-separated revocations in force: device, user, session")
	certStatus := fs.String("cert", "", "the certificate's status when it was not accepted: invalid, revoked or unverifiable")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*resName == "") == (*tunName == "") || (*tunName != "") != (*dest != "") {
		fmt.Fprintln(stderr, "portcullis explain: want --resource NAME, or --tunnel NAME with --dest HOST:PORT")
		return 2
	}
	cfg, err := gateway.LoadConfig(*config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	now := time.Now()
	in := enforcement.Input{Now: now, Request: enforcement.Request{Method: *method, Host: *host, Path: *path, Protocol: "HTTP/2.0"}}
	var rc *gateway.ResourceConfig
	var tun *tunnel.Tunnel
	var pol *enforcement.Policy
	if *tunName != "" {
		if tun, err = explainTunnel(cfg, *tunName); err != nil {
			fmt.Fprintf(stderr, "portcullis explain: %v\n", err)
			return 1
		}
		pol = tun.Policy
		rc = &gateway.ResourceConfig{Name: tun.Name, Remediation: tun.Remediation}
		in.Request = enforcement.Request{Method: "CONNECT", Host: *dest, Protocol: "HTTP/2.0"}
	} else {
		for i := range cfg.Resources {
			if cfg.Resources[i].Name == *resName {
				rc = &cfg.Resources[i]
			}
		}
		if rc == nil {
			fmt.Fprintf(stderr, "portcullis explain: no resource named %q\n", *resName)
			return 1
		}
		if pol, err = enforcement.Compile(rc.Policy, enforcement.Defaults{MaxPostureAge: cfg.Posture.MaxAge.Std()}); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if *host == "" && len(rc.Hosts) > 0 {
			in.Request.Host = rc.Hosts[0]
		}
	}
	if *deviceID != "" {
		ca := *caName
		if ca == "" && len(cfg.Devices.CAs) == 1 {
			ca = cfg.Devices.CAs[0].Name
		}
		in.Device = &certs.DeviceIdentity{CA: ca, DeviceID: *deviceID, User: strings.ToLower(*user)}
	}
	if *user != "" {
		in.Subject = &enforcement.Subject{UserID: strings.ToLower(*user), Email: *user, IdP: "explain", SessionID: "explain"}
		if *groups != "" {
			in.Subject.Groups = strings.Split(*groups, ",")
		}
	}

	switch *certStatus {
	case "":
	case "invalid", "revoked", "unverifiable":
		in.Cert, in.Device = map[string]enforcement.CertStatus{
			"invalid": enforcement.CertInvalid, "revoked": enforcement.CertRevoked, "unverifiable": enforcement.CertUnverifiable,
		}[*certStatus], nil
	default:
		fmt.Fprintln(stderr, "portcullis explain: --cert: want invalid, revoked or unverifiable")
		return 2
	}
	if in.Device != nil {
		in.Cert = enforcement.CertValid
		if in.Device.User != "" && pol.Login() == enforcement.LoginNone {
			// As the gateway does: a certificate-only user signed in when
			// the certificate was issued (unknown here: before any
			// revocation).
			in.Subject.IdP = "device-certificate"
		}
	}

	// Gather, then decide: the same two steps as the gateway's.
	var st enforcement.State
	if *stateDir != "" {
		db, err := posture.Open(*stateDir, posture.Options{})
		if err != nil {
			fmt.Fprintf(stderr, "portcullis explain: %v (a running gateway holds the store: stop it, or use its admin API)\n", err)
			return 1
		}
		defer db.Close()
		st = db
	} else {
		fst := &flagState{}
		if in.Device != nil && *compliant != "" {
			p, err := hypotheticalPosture(*managed, *compliant, *threat, now.Add(-*age))
			if err != nil {
				fmt.Fprintf(stderr, "portcullis explain: %v\n", err)
				return 2
			}
			fst.device = &posture.Device{Key: posture.DeviceKey{CA: in.Device.CA, ID: in.Device.DeviceID}, Records: []posture.Posture{p}}
		}
		if in.Subject != nil && *risk != "" {
			lvl, ok := posture.ParseRiskLevel(*risk)
			if !ok {
				fmt.Fprintf(stderr, "portcullis explain: --risk: unknown level %q\n", *risk)
				return 2
			}
			fst.risk = &posture.UserRisk{User: in.Subject.UserID, Level: lvl, ObservedAt: now, Source: "explain"}
		}
		if *revoked != "" {
			for _, r := range strings.Split(*revoked, ",") {
				switch strings.TrimSpace(r) {
				case "device":
					fst.deviceRevoked = now
				case "user":
					fst.userRevoked = now
				case "session":
					fst.sessionRevoked = true
				default:
					fmt.Fprintf(stderr, "portcullis explain: --revoked: unknown revocation %q (want device, user or session)\n", r)
					return 2
				}
			}
		}
		st = fst
	}
	enforcement.Gather(st, &in)

	d := enforcement.Decide(pol, &in)
	fmt.Fprintf(stdout, "resource: %s\nverdict:  %s\nreason:   %s\n", rc.Name, d.Verdict, d.Reason)
	if d.Rule != "" {
		fmt.Fprintf(stdout, "rule:     %s\n", d.Rule)
	}
	fmt.Fprintf(stdout, "message:  %s\n", d.Reason.Message())
	if (d.Verdict == enforcement.Remediate || d.Verdict == enforcement.Deny) && rc.Remediation != "" {
		fmt.Fprintf(stdout, "remediation: %s\n", rc.Remediation)
	}
	if d.Verdict != enforcement.Allow {
		return 3 // scripts can tell a deny from an error
	}
	if tun != nil {
		return explainDest(stdout, stderr, cfg, tun, *dest)
	}
	return 0
}

func hypotheticalPosture(managed bool, compliant, threat string, observed time.Time) (posture.Posture, error) {
	p := posture.Posture{Source: "explain", Managed: managed, ObservedAt: observed, ReceivedAt: observed, State: posture.StateActive}
	switch compliant {
	case "true":
		p.Compliance = posture.Compliant
	case "false":
		p.Compliance = posture.NotCompliant
	case "unknown":
	default:
		return p, errors.New("--compliant: want true, false or unknown")
	}
	if threat != "unknown" && threat != "" {
		t, ok := posture.ParseThreatLevel(threat)
		if !ok {
			return p, fmt.Errorf("--threat: unknown level %q", threat)
		}
		p.Threat = t
	}
	return p, nil
}

// flagState is the [enforcement.State] that explain's flags describe, for
// a decision without a state directory: at most one device and one user.
type flagState struct {
	device         *posture.Device
	risk           *posture.UserRisk
	deviceRevoked  time.Time
	userRevoked    time.Time
	sessionRevoked bool
}

func (f *flagState) Device(k posture.DeviceKey) *posture.Device {
	if f.device != nil && f.device.Key == k {
		return f.device
	}
	return nil
}

func (f *flagState) Risk(user string) *posture.UserRisk {
	if f.risk != nil && f.risk.User == user {
		return f.risk
	}
	return nil
}

func (f *flagState) SessionRevoked(string) bool                      { return f.sessionRevoked }
func (f *flagState) UserRevokedBefore(string) time.Time              { return f.userRevoked }
func (f *flagState) DeviceRevokedBefore(posture.DeviceKey) time.Time { return f.deviceRevoked }
