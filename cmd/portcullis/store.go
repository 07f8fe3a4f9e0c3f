package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"portcullis/gateway"
	"portcullis/posture"
	redisstore "portcullis/posture/redis"
)

const storeUsage = `usage: portcullis store export|import --config FILE [flags]

  export [--from embedded|redis] [--out FILE]            write the store's records as JSON lines
  import [--to embedded|redis] [--in FILE] [--force]     read them into a store

The store defaults to the one the configuration selects: state.redis if
set, else the embedded store in state.dir. Stop the gateways first (the
embedded store is locked while a gateway runs; an import into Redis does
not check what replicas write meanwhile). An import into a store that
holds records is refused unless --force. See docs/scaling.md.
`

// cmdStore moves the records of the posture store between the embedded
// store and Redis, through a dump file (posture's JSON lines format).
func cmdStore(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "export" && args[0] != "import") {
		fmt.Fprint(stderr, storeUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("store "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "portcullis.yaml", "configuration file (state.dir, state.redis)")
	kind := fs.String(map[string]string{"export": "from", "import": "to"}[verb], "", "embedded or redis (default: what the configuration selects)")
	file := fs.String(map[string]string{"export": "out", "import": "in"}[verb], "-", "dump file (- is standard output or input)")
	force := fs.Bool("force", false, "import into a store that holds records")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "portcullis store %s: %s\n", verb, fmt.Sprintf(format, a...))
		return 1
	}
	cfg, err := gateway.LoadConfig(*config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *kind == "" {
		*kind = "embedded"
		if cfg.State.Redis != nil {
			*kind = "redis"
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var red *redisstore.Store
	switch *kind {
	case "embedded":
	case "redis":
		if cfg.State.Redis == nil {
			return fail("the configuration has no state.redis")
		}
		if red, err = redisstore.Open(*cfg.State.Redis, redisstore.Options{}); err != nil {
			return fail("%v", err)
		}
		defer red.Close()
	default:
		fmt.Fprintf(stderr, "portcullis store %s: the store is embedded or redis, not %q\n", verb, *kind)
		return 2
	}
	dir := cfg.State.Dir.String()

	if verb == "export" {
		out := stdout
		if *file != "-" {
			f, err := os.OpenFile(*file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return fail("%v", err)
			}
			defer f.Close()
			out = f
		}
		w := posture.NewDumpWriter(out)
		n := 0
		yield := func(e posture.Entry) error { n++; return w.Write(e) }
		if red != nil {
			err = red.Export(ctx, yield)
		} else {
			err = posture.ExportDir(dir, time.Now(), yield)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(stderr, "exported %d records from the %s store\n", n, *kind)
		return 0
	}

	in := io.Reader(os.Stdin)
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fail("%v", err)
		}
		defer f.Close()
		in = f
	}
	r, err := posture.NewDumpReader(bufio.NewReader(in))
	if err != nil {
		return fail("%v", err)
	}
	var n int
	if red != nil {
		n, err = red.Import(ctx, *force, r.Next)
	} else {
		n, err = posture.ImportDir(dir, time.Now(), *force, r.Next)
	}
	if err != nil {
		return fail("%v (%d records written)", err, n)
	}
	fmt.Fprintf(stdout, "imported %d records into the %s store\n", n, *kind)
	return 0
}
