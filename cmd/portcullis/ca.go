package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"portcullis/certs/devca"
)

// cmdCA manages a file-backed dev device CA: the kind of certificates a
// UEM's SCEP profile issues, for trying Portcullis without a UEM.
func cmdCA(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: portcullis ca init|issue|revoke|crl --dir DIR [flags]")
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("ca "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "data/ca", "the CA's directory")
	name := fs.String("name", "Portcullis Dev Device CA", "with init: the CA's common name")
	device := fs.String("device", "", "with issue: device id (required)")
	user := fs.String("user", "", "with issue: the user put in the SAN (email and UPN)")
	validity := fs.Duration("validity", 90*24*time.Hour, "with issue: certificate lifetime; with crl: CRL lifetime")
	out := fs.String("out", "", "with issue: file prefix for <prefix>.pem and <prefix>.key (default DIR/<device>); with crl: output file (default DIR/crl.pem)")
	serial := fs.String("serial", "", "with revoke: the certificate's serial (hex)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "portcullis ca %s: %v\n", sub, err); return 1 }
	switch sub {
	case "init":
		if _, err := devca.Init(*dir, *name); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "device CA ready in %s (certificate: %s)\n", *dir, filepath.Join(*dir, "ca.pem"))
		return 0
	}
	ca, err := devca.Load(*dir)
	if err != nil {
		return fail(err)
	}
	switch sub {
	case "issue":
		if *device == "" {
			return fail(fmt.Errorf("--device is required"))
		}
		certPEM, keyPEM, ser, err := ca.IssueDevice(*device, *user, *validity)
		if err != nil {
			return fail(err)
		}
		prefix := *out
		if prefix == "" {
			prefix = filepath.Join(*dir, *device)
		}
		if err := os.WriteFile(prefix+".pem", certPEM, 0o644); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(prefix+".key", keyPEM, 0o600); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "issued %s.pem (serial %s)\n", prefix, ser)
	case "revoke":
		if *serial == "" {
			return fail(fmt.Errorf("--serial is required"))
		}
		if err := ca.Revoke(*serial); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "revoked %s; run \"portcullis ca crl\" to publish\n", *serial)
	case "crl":
		crl, err := ca.CRL(*validity)
		if err != nil {
			return fail(err)
		}
		path := *out
		if path == "" {
			path = filepath.Join(*dir, "crl.pem")
		}
		if err := os.WriteFile(path, crl, 0o644); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "wrote %s\n", path)
	default:
		fmt.Fprintf(stderr, "portcullis ca: unknown subcommand %q\n", sub)
		return 2
	}
	return 0
}
