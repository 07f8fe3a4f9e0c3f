package main

import (
	"flag"
	"fmt"
	"io"

	"portcullis/gateway"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "portcullis.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, errs := gateway.Check(*config)
	for _, e := range errs {
		fmt.Fprintln(stderr, e)
	}
	if len(errs) > 0 {
		fmt.Fprintf(stderr, "%s: %d problem(s)\n", *config, len(errs))
		return 1
	}
	if len(cfg.Tunnels) > 0 {
		fmt.Fprintf(stdout, "%s: OK (%d resources, %d tunnels, %d listeners)\n", *config, len(cfg.Resources), len(cfg.Tunnels), len(cfg.Listen))
		return 0
	}
	fmt.Fprintf(stdout, "%s: OK (%d resources, %d listeners)\n", *config, len(cfg.Resources), len(cfg.Listen))
	return 0
}
