package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"portcullis/gateway"
)

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "portcullis.yaml", "configuration file")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	enableExtendedConnect()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "portcullis: -log-level: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	tuneGC()
	g, err := gateway.New(*config, gateway.Options{
		Logger:  logger,
		Version: buildVersion(),
		OnReady: func(g *gateway.Gateway) { printNextSteps(stdout, *config, g) },
	})
	if err != nil {
		fmt.Fprintf(stderr, "portcullis: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = g.Reload() // Reload logs the outcome
			}
		}
	}()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "portcullis: %v\n", err)
		return 1
	}
	return 0
}

// tuneGC sets the collector's pace for a proxy: its live heap is small
// (connections, caches, the posture store) while it allocates fast per
// request, so Go's default of collecting at 100% growth spends CPU on
// collections that free little. 400% costs a few tens of megabytes and
// buys throughput. An operator's GOGC or GOMEMLIMIT always wins.
func tuneGC() {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(400)
	}
}

// enableExtendedConnect re-executes the process with GODEBUG
// http2xconnect=1 unless GODEBUG already says something about it. Go's
// HTTP/2 server supports extended CONNECT (RFC 8441: websockets over
// HTTP/2) only with that setting, and reads it from the environment once
// at start, so a running process cannot switch it on. GODEBUG=
// http2xconnect=0 keeps it off. If the re-exec fails, serve goes on
// without it: HTTP/1.1 websockets still work.
func enableExtendedConnect() {
	gd := os.Getenv("GODEBUG")
	if strings.Contains(gd, "http2xconnect=") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	if gd != "" {
		gd += ","
	}
	env := os.Environ()
	env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
	env = append(env, "GODEBUG="+gd+"http2xconnect=1")
	_ = syscall.Exec(exe, os.Args, env) // returns only on failure
}
