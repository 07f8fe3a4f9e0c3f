package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"portcullis/gateway"
)

// printNextSteps prints, for the quickstart, commands to paste: an allowed
// request, a denied one, and a feed post that turns the device bad.
func printNextSteps(w io.Writer, config string, g *gateway.Gateway) {
	q := g.Quickstart()
	if q == nil {
		return
	}
	rel := func(p string) string {
		if wd, err := os.Getwd(); err == nil {
			if r, err := filepath.Rel(wd, p); err == nil {
				return r
			}
		}
		return p
	}
	fmt.Fprintf(w, `
Portcullis is running (quickstart). Try:

  # 1. with the sample device's certificate: allowed, the echo upstream shows the identity it got
  curl --cacert %[1]s --cert %[2]s --key %[3]s %[4]s/

  # 2. without a device certificate: denied (401, reason device.certificate_missing)
  curl --cacert %[1]s %[4]s/

  # 3. the UEM feed says the device is no longer compliant (a signed webhook) ...
  go run ./cmd/portcullis feed post --url %[4]s/.portcullis/feeds/%[5]s --secret-file %[6]s --cacert %[1]s \
      --source %[5]s --device %[7]s --compliant=false

  # ... so request 1 is now denied (403, reason device.not_compliant); mark it compliant again with --compliant=true

Metrics: %[8]s/metrics   Ready: %[8]s/readyz   Config: %[9]s
`, rel(q.CACert), rel(q.DeviceCert), rel(q.DeviceKey), q.HTTPSURL, q.FeedName, rel(q.FeedSecret), q.DeviceID, q.AdminURL, config)
}
