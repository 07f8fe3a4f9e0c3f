// Command portcullis is the Portcullis zero-trust gateway: serve runs it,
// check validates a configuration, explain dry-runs a decision, ca manages
// a dev device CA, feed posts a signed posture event, and connect is the
// tunnel client.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set by the build (-ldflags "-X main.version=...").
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "explain":
		return cmdExplain(rest, stdout, stderr)
	case "ca":
		return cmdCA(rest, stdout, stderr)
	case "feed":
		return cmdFeed(rest, stdout, stderr)
	case "posture":
		return cmdPosture(rest, stdout, stderr)
	case "revoke":
		return cmdRevoke(rest, stdout, stderr)
	case "store":
		return cmdStore(rest, stdout, stderr)
	case "connect":
		return cmdConnect(rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "portcullis", buildVersion())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "portcullis: unknown command %q\n\n", cmd)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: portcullis <command> [flags]

commands:
  serve    --config FILE            run the gateway
  check    --config FILE            validate a configuration; lists every problem
  explain  --config FILE --resource NAME [--device ID] [--user U] ...
                                    dry-run a decision and say which rule decided
  ca       init|issue|revoke|crl    manage a dev device CA
  feed     post                     send a signed portcullis.posture.v1 event
  posture  set                      write a posture record into a stopped gateway's store
  revoke   --user U | --device CA/ID | --session S
                                    revoke through the admin API; live connections close
  store    export|import            move the store's records between state.dir and Redis
  connect  --proxy HOST:PORT --forward LISTEN=TARGET --cert F --key F
                                    carry local TCP connections through tunnels (CONNECT)
  version                           print the version

Run "portcullis <command> -h" for a command's flags.
`)
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "devel-" + s.Value[:12]
			}
		}
	}
	return "devel"
}
