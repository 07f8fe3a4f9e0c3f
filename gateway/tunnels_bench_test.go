package gateway

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"portcullis/gateway/tunnel"
)

// startSource runs a TCP server that sends zeros to every connection
// until it is closed.
func startSource(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// BenchmarkTunnelThroughput reads from a TCP source on loopback directly
// and through a CONNECT tunnel over HTTP/2 (and HTTP/3) through the
// gateway. Each op reads 1 MiB; MB/s compares them. Bounded: 1 MiB per
// op, one connection.
func BenchmarkTunnelThroughput(b *testing.B) {
	const chunk = 1 << 20
	src := startSource(b)
	read := func(b *testing.B, c net.Conn) {
		buf := make([]byte, 64<<10)
		b.SetBytes(chunk)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := io.ReadFull(c, buf[:0]); err != nil {
				b.Fatal(err)
			}
			for n := 0; n < chunk; {
				k, err := c.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				n += k
			}
		}
	}
	b.Run("direct", func(b *testing.B) {
		c, err := net.Dial("tcp", src)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		read(b, c)
	})
	e := startTunnelEnv(b)
	for _, tr := range []tunnel.Transport{tunnel.TransportH2, tunnel.TransportH3} {
		b.Run("tunnel-"+string(tr), func(b *testing.B) {
			c, err := e.client(b, "localhost", tr).Dial(context.Background(), src)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			read(b, c)
		})
	}
}
