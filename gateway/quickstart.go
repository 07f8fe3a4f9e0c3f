package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"portcullis/posture"
)

// QuickstartInfo says where the quickstart put its files and how to reach
// it, for the commands `serve` prints.
type QuickstartInfo struct {
	Dir        string
	CACert     string // trust anchor for the server certificate
	DeviceCert string
	DeviceKey  string
	DeviceID   string
	FeedName   string
	FeedSecret string
	HTTPSURL   string // e.g. https://localhost:8443
	AdminURL   string
	ConfigPath string
}

// Quickstart returns the quickstart's files and addresses, or nil when the
// configuration has no dev.dir.
func (g *Gateway) Quickstart() *QuickstartInfo {
	cfg := g.cur.Load().cfg
	if cfg.Dev.Dir == "" {
		return nil
	}
	dir := cfg.Dev.Dir.String()
	info := &QuickstartInfo{
		Dir: dir, CACert: filepath.Join(dir, "ca.pem"),
		DeviceCert: filepath.Join(dir, "device.pem"), DeviceKey: filepath.Join(dir, "device.key"),
		ConfigPath: g.path,
	}
	if b, err := os.ReadFile(filepath.Join(dir, "device.id")); err == nil {
		info.DeviceID = strings.TrimSpace(string(b))
	}
	for _, f := range cfg.Posture.Feeds {
		info.FeedName, info.FeedSecret = f.Name, f.SecretFile.String()
		break
	}
	for k, v := range g.listenerAddrs() {
		if strings.HasPrefix(k, "https") {
			info.HTTPSURL = "https://" + strings.Replace(v, "127.0.0.1", "localhost", 1)
		}
		if k == "admin" {
			info.AdminURL = "http://" + v
		}
	}
	return info
}

// seedDevPosture gives the quickstart's sample device a compliant record
// from the first feed, once, so the first request with its certificate is
// allowed. A record the device already has (posted by the user) is kept.
func (g *Gateway) seedDevPosture(cfg *Config) {
	if cfg.Dev.Dir == "" || len(cfg.Posture.Feeds) == 0 {
		return
	}
	dir := cfg.Dev.Dir.String()
	b, err := os.ReadFile(filepath.Join(dir, "device.id"))
	if err != nil {
		return
	}
	id := strings.TrimSpace(string(b))
	ca := ""
	for _, c := range cfg.Devices.CAs {
		if filepath.Clean(c.Bundle.String()) == filepath.Join(dir, "device-ca.pem") {
			ca = c.Name
		}
	}
	if ca == "" {
		return
	}
	key := posture.DeviceKey{CA: ca, ID: id}
	if g.store.Device(key) != nil {
		return
	}
	// A whole second, as most UEMs send: the user's first report in the
	// same second ties with the seed, and the more restrictive wins.
	now := time.Now().Truncate(time.Second)
	_, err = g.store.ApplyPosture(context.Background(), []posture.PostureEvent{{
		Key: key,
		Posture: posture.Posture{
			Source: cfg.Posture.Feeds[0].Name, EventID: "dev-seed-" + id, Managed: true,
			Compliance: posture.Compliant, Threat: posture.ThreatNone, State: posture.StateActive,
			ObservedAt: now,
		},
	}})
	if err != nil {
		g.log.Warn("seeding the sample device's posture", "error", err)
		return
	}
	g.log.Info("seeded the sample device's posture", "device_id", id, "observed_at", now.UTC())
}
