package audit

import (
	"errors"
	"net"
	"strconv"

	"portcullis/internal/conf"
)

// Defaults for [Config].
const (
	DefaultOutput       = "stdout"
	DefaultTransport    = "tcp"
	DefaultAppName      = "portcullis"
	DefaultSyslogBuffer = 10000
	maxSyslogBuffer     = 1_000_000
	maxAppNameLen       = 48 // RFC 5424 APP-NAME
	outputQueue         = 10000
	transportTCP        = "tcp"
	transportTLS        = "tls"
)

// Config is the audit section of the configuration: where decision
// records go.
type Config struct {
	// Output receives one JSON decision record per line: "stdout",
	// "stderr", or the path of a file, which is appended to and created
	// with mode 0600 if missing. Default: stdout.
	Output Output `yaml:"output"`
	// Syslog, when set, also ships every record to a SIEM as RFC 5424
	// syslog over TCP or TLS.
	Syslog *SyslogConfig `yaml:"syslog"`
}

// SyslogConfig configures shipping to a syslog receiver such as IBM
// QRadar, rsyslog or syslog-ng.
type SyslogConfig struct {
	// Address is the receiver's "host:port". Required.
	Address string `yaml:"address"`
	// Transport is "tcp" (default) or "tls". Frames use octet counting
	// (RFC 6587 §3.4.1) on both; TLS is RFC 5425.
	Transport string `yaml:"transport"`
	// CAFile is a PEM bundle of the CAs that may sign the receiver's
	// certificate, for transport "tls". Default: the system roots.
	CAFile conf.Path `yaml:"ca_file"`
	// AppName is the RFC 5424 APP-NAME. Default: portcullis.
	AppName string `yaml:"app_name"`
	// Buffer is how many messages wait for the receiver; when it is full,
	// new records are dropped and counted in
	// portcullis_audit_dropped_total{sink="syslog"}. Default: 10000.
	Buffer int `yaml:"buffer"`
}

// Output is where decision records are written: "stdout", "stderr", or a
// file. The decoder resolves a relative file name against the
// configuration file's directory.
type Output string

// The outputs that are not files.
const (
	OutputStdout Output = "stdout"
	OutputStderr Output = "stderr"
)

// UnmarshalConfigPath implements [conf.PathUnmarshaler].
func (o *Output) UnmarshalConfigPath(text []byte, dir string) error {
	switch s := Output(text); s {
	case OutputStdout, OutputStderr:
		*o = s
	default:
		*o = Output(conf.Resolve(dir, string(text)))
	}
	return nil
}

// Validate reports every problem in c.
func (c *Config) Validate() error {
	if c.Syslog == nil {
		return nil
	}
	return conf.AtKey("syslog", c.Syslog.Validate())
}

// Validate reports every problem in c.
func (c *SyslogConfig) Validate() error {
	var errs []error
	if c.Address == "" {
		errs = append(errs, conf.Errorf("address", "is required"))
	} else if host, port, err := net.SplitHostPort(c.Address); err != nil || host == "" {
		errs = append(errs, conf.Errorf("address", "must be host:port, got %q", c.Address))
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		errs = append(errs, conf.Errorf("address", "port must be a number from 1 to 65535, got %q", port))
	}
	switch c.Transport {
	case "", transportTCP:
		if c.CAFile != "" {
			errs = append(errs, conf.Errorf("ca_file", "is only used with transport tls"))
		}
	case transportTLS:
	default:
		errs = append(errs, conf.Errorf("transport", "must be tcp or tls, got %q", c.Transport))
	}
	if len(c.AppName) > maxAppNameLen || !printASCII(c.AppName) {
		errs = append(errs, conf.Errorf("app_name", "must be at most %d printable ASCII characters without spaces", maxAppNameLen))
	}
	if c.Buffer < 0 || c.Buffer > maxSyslogBuffer {
		errs = append(errs, conf.Errorf("buffer", "must be from 0 (default %d) to %d", DefaultSyslogBuffer, maxSyslogBuffer))
	}
	return errors.Join(errs...)
}

// printASCII reports whether s is made of RFC 5424 PRINTUSASCII
// characters (33–126).
func printASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}
