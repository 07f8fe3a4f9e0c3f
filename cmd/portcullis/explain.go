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
	"portcullis/posture"
)

// cmdExplain dry-runs a decision with the same Compile and Decide the
// gateway uses, from flags and, with --state, the stored posture.
func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "portcullis.yaml", "configuration file")
	resName := fs.String("resource", "", "resource name (required)")
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
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *resName == "" {
		fmt.Fprintln(stderr, "portcullis explain: --resource is required")
		return 2
	}
	cfg, err := gateway.LoadConfig(*config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var rc *gateway.ResourceConfig
	for i := range cfg.Resources {
		if cfg.Resources[i].Name == *resName {
			rc = &cfg.Resources[i]
		}
	}
	if rc == nil {
		fmt.Fprintf(stderr, "portcullis explain: no resource named %q\n", *resName)
		return 1
	}
	pol, err := enforcement.Compile(rc.Policy, enforcement.Defaults{MaxPostureAge: cfg.Posture.MaxAge.Std()})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	now := time.Now()
	in := enforcement.Input{Now: now, Request: enforcement.Request{Method: *method, Host: *host, Path: *path, Protocol: "HTTP/2.0"}}
	if *host == "" && len(rc.Hosts) > 0 {
		in.Request.Host = rc.Hosts[0]
	}
	if *deviceID != "" {
		ca := *caName
		if ca == "" && len(cfg.Devices.CAs) == 1 {
			ca = cfg.Devices.CAs[0].Name
		}
		in.Device = &certs.DeviceIdentity{CA: ca, DeviceID: *deviceID, User: strings.ToLower(*user)}
	}
	if *user != "" {
		in.Subject = &enforcement.Subject{UserID: strings.ToLower(*user), Email: *user, IdP: "explain"}
		if *groups != "" {
			in.Subject.Groups = strings.Split(*groups, ",")
		}
	}

	if *stateDir != "" {
		db, err := posture.Open(*stateDir, posture.Options{})
		if err != nil {
			fmt.Fprintf(stderr, "portcullis explain: %v (a running gateway holds the store: stop it, or use its admin API)\n", err)
			return 1
		}
		defer db.Close()
		if in.Device != nil {
			in.Posture = db.Device(posture.DeviceKey{CA: in.Device.CA, ID: in.Device.DeviceID})
		}
		if in.Subject != nil {
			in.Risk = db.Risk(in.Subject.UserID)
		}
	} else {
		if in.Device != nil && *compliant != "" {
			p, err := hypotheticalPosture(*managed, *compliant, *threat, now.Add(-*age))
			if err != nil {
				fmt.Fprintf(stderr, "portcullis explain: %v\n", err)
				return 2
			}
			in.Posture = &posture.Device{Key: posture.DeviceKey{CA: in.Device.CA, ID: in.Device.DeviceID}, Records: []posture.Posture{p}}
		}
		if in.Subject != nil && *risk != "" {
			lvl, ok := posture.ParseRiskLevel(*risk)
			if !ok {
				fmt.Fprintf(stderr, "portcullis explain: --risk: unknown level %q\n", *risk)
				return 2
			}
			in.Risk = &posture.UserRisk{User: in.Subject.UserID, Level: lvl, ObservedAt: now, Source: "explain"}
		}
	}

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
