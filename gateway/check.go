package gateway

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"portcullis/internal/conf"
)

// Check runs the build `serve` runs on the configuration file at path and
// discards it: it decodes and validates the file, reads every file it
// names (secrets, keys, certificates, CA bundles, CRLs, IdP metadata),
// compiles every policy and CEL expression, and builds the TLS
// configurations, through the same code as [New]. It listens on nothing,
// starts no goroutine and makes no network request. It returns every
// problem found, each a *conf.PosError with file, line and column; none
// means serve would start with this file (short of binding its
// addresses).
//
// What serve would create rather than read is made in a scratch
// directory that Check removes: the state directory's contents (the
// posture store, the assertion and session keys), and the files dev.dir
// provisions that do not exist yet. So Check writes nothing of its own
// and never contends with a running gateway for its state.
func Check(path string) (*Config, []*conf.PosError) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []*conf.PosError{{File: path, Msg: err.Error()}}
	}
	cfg, pos, perrs := decodeConfig(path, data)
	if len(perrs) > 0 {
		return nil, perrs
	}
	scratch, err := os.MkdirTemp("", "portcullis-check-")
	if err != nil {
		return nil, []*conf.PosError{{File: path, Msg: err.Error()}}
	}
	defer os.RemoveAll(scratch)

	run := scratchConfig(path, data, scratch)
	// A done context: build's warm-up fetches fail at once, unlogged.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g, err := open(ctx, path, run, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, conf.Locate(path, pos, err)
	}
	g.close()
	return cfg, nil
}

// scratchConfig decodes the configuration again (so nothing is shared with
// the one Check returns) and moves what serve would create into scratch:
// the state directory, and every file under dev.dir that is missing (the
// dev directory itself moves to scratch, where the build provisions it).
func scratchConfig(path string, data []byte, scratch string) *Config {
	c, _, _ := decodeConfig(path, data) // decoded once already without error
	c.State.Dir = conf.Path(filepath.Join(scratch, "state"))
	if c.Dev.Dir == "" {
		return c
	}
	devDir := filepath.Clean(c.Dev.Dir.String())
	scratchDev := filepath.Join(scratch, "dev")
	c.Dev.Dir = conf.Path(scratchDev)
	conf.MapPaths(c, func(p conf.Path) conf.Path {
		rel, err := filepath.Rel(devDir, p.String())
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return p
		}
		if _, err := os.Stat(p.String()); !errors.Is(err, fs.ErrNotExist) {
			return p
		}
		return conf.Path(filepath.Join(scratchDev, rel))
	})
	return c
}
