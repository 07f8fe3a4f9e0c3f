package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"portcullis/gateway"
	"portcullis/posture"
)

// cmdPosture writes a posture record straight into a stopped gateway's
// store, through the same ordering and dedup rules a feed goes through:
// for bootstrapping a device, or benchmarks that need one before serving.
func cmdPosture(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "set" {
		fmt.Fprintln(stderr, "usage: portcullis posture set --config FILE --device ID [--ca NAME] [flags]")
		return 2
	}
	fs := flag.NewFlagSet("posture set", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "portcullis.yaml", "configuration file (for state.dir and the device CA)")
	device := fs.String("device", "", "device id (required)")
	ca := fs.String("ca", "", "device CA name (default: the only configured CA)")
	source := fs.String("source", "manual", "source name recorded with the record")
	managed := fs.Bool("managed", true, "the device is managed")
	compliant := fs.String("compliant", "true", "true, false or unknown")
	threat := fs.String("threat", "none", "none, low, medium, high, critical or unknown")
	user := fs.String("user", "", "primary user")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *device == "" {
		fmt.Fprintln(stderr, "portcullis posture set: --device is required")
		return 2
	}
	cfg, err := gateway.LoadConfig(*config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *ca == "" && len(cfg.Devices.CAs) == 1 {
		*ca = cfg.Devices.CAs[0].Name
	}
	if *ca == "" {
		fmt.Fprintln(stderr, "portcullis posture set: --ca is required when several device CAs are configured")
		return 2
	}
	now := time.Now()
	p, err := hypotheticalPosture(*managed, *compliant, *threat, now)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis posture set: %v\n", err)
		return 2
	}
	var id [8]byte
	rand.Read(id[:])
	p.Source, p.EventID, p.User = *source, "manual-"+hex.EncodeToString(id[:]), strings.ToLower(*user)
	db, err := posture.Open(cfg.State.Dir.String(), posture.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "portcullis posture set: %v (stop the gateway first, or post to its feed)\n", err)
		return 1
	}
	defer db.Close()
	out, err := db.ApplyPosture(context.Background(), []posture.PostureEvent{{Key: posture.DeviceKey{CA: *ca, ID: *device}, Posture: p}})
	if err != nil {
		fmt.Fprintf(stderr, "portcullis posture set: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s/%s: %s\n", *ca, *device, out[0])
	return 0
}
