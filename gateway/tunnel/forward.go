package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

// Forward accepts connections on ln until ctx is done and carries each
// through its own tunnel to target. A connection whose tunnel is refused
// is closed, and onErr (if set) is told why; Forward keeps serving. It
// returns when ctx is done or ln fails, once every connection it carried
// has ended.
func (c *Client) Forward(ctx context.Context, ln net.Listener, target string, onErr func(error)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() {
			defer conn.Close()
			t, err := c.Dial(ctx, target)
			if err != nil {
				if onErr != nil {
					onErr(err)
				}
				return
			}
			defer t.Close()
			done := context.AfterFunc(ctx, func() { conn.Close(); t.Close() })
			defer done()
			splice(conn, t)
		})
	}
}

// splice copies a and b into each other until both directions end,
// passing a half-close on; an error in either direction ends both.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	one := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go one(a, b)
	go one(b, a)
	wg.Wait()
}
