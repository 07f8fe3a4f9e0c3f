package gateway

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"portcullis/certs"
	"portcullis/enforcement"
	"portcullis/internal/conf"
)

// Check validates the configuration file at path as serve would load it,
// without starting anything or writing any file: it decodes and validates
// the YAML, compiles every policy, and loads every certificate, CA bundle
// and secret it names. It returns every problem found, each a
// *conf.PosError with file, line and column; none means the file is good.
//
// Files that dev.dir provisions on first start are not required to exist.
func Check(path string) (*Config, []*conf.PosError) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []*conf.PosError{{File: path, Msg: err.Error()}}
	}
	cp, pos, perrs := decodeConfig(path, data)
	if len(perrs) > 0 {
		return nil, perrs
	}
	c := *cp
	var errs []error
	devDir := ""
	if c.Dev.Dir != "" {
		devDir = c.Path(c.Dev.Dir) + string(filepath.Separator)
	}
	provisioned := func(p string) bool {
		if devDir == "" || !strings.HasPrefix(c.Path(p), devDir) {
			return false
		}
		_, err := os.Stat(c.Path(p))
		return errors.Is(err, os.ErrNotExist)
	}

	for i, rc := range c.Resources {
		if _, err := enforcement.Compile(rc.Policy, enforcement.Defaults{MaxPostureAge: c.Posture.MaxAge.Std()}); err != nil {
			errs = append(errs, conf.AtKey(fmt.Sprintf("resources[%d].policy", i), err))
		}
		if f := rc.UpstreamTLS.CAFile; f != "" {
			if _, err := os.ReadFile(c.Path(f)); err != nil {
				errs = append(errs, conf.Errorf(fmt.Sprintf("resources[%d].upstream_tls.ca_file", i), "%v", err))
			}
		}
	}
	opts := certs.Options{}
	tlsCfg := c.TLS
	tlsCfg.Certificates = nil
	for i, cert := range c.TLS.Certificates {
		if provisioned(cert.Cert) || provisioned(cert.Key) {
			continue
		}
		if _, err := certs.NewServerCerts(certs.ServerConfig{Certificates: c.TLS.Certificates[i : i+1]}, c.dir, opts); err != nil {
			errs = append(errs, conf.AtKey(fmt.Sprintf("tls.certificates[%d]", i), err))
		}
	}
	devCfg := c.Devices
	devCfg.CAs = nil
	for _, ca := range c.Devices.CAs {
		if !provisioned(ca.Bundle) {
			devCfg.CAs = append(devCfg.CAs, ca)
		}
	}
	if len(devCfg.CAs) > 0 {
		if _, err := certs.NewDevices(devCfg, c.dir, opts); err != nil {
			errs = append(errs, conf.AtKey("devices", err))
		}
	}
	for i, fc := range c.Posture.Feeds {
		for _, f := range append(fc.AuthorizationSecrets(), fc.APITokenFile) {
			if f == "" || provisioned(f) {
				continue
			}
			if _, err := conf.ReadSecretFile(c.Path(f)); err != nil {
				errs = append(errs, conf.Errorf(fmt.Sprintf("posture.feeds[%d]", i), "%v", err))
			}
		}
		for _, f := range fc.Secrets() {
			if provisioned(f) {
				continue
			}
			s, err := conf.ReadSecretFile(c.Path(f))
			if err == nil {
				_, err = conf.DecodeWebhookSecret(s)
			}
			if err != nil {
				errs = append(errs, conf.Errorf(fmt.Sprintf("posture.feeds[%d].secret_file", i), "%v", err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, conf.Locate(path, pos, errors.Join(errs...))
	}
	return &c, nil
}
