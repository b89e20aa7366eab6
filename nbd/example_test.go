package nbd_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"

	"github.com/gitblk/gitblk/nbd"
)

// memDisk is a trivial Image.
type memDisk struct{ *bytes.Reader }

func (m memDisk) Size() int64 { return m.Reader.Size() }

// Serve one in-memory export as the default export until interrupted.
func ExampleServer() {
	disk := memDisk{bytes.NewReader(make([]byte, 1<<20))}
	srv := &nbd.Server{
		Resolve: func(ctx context.Context, name string, peer nbd.Peer) (*nbd.Export, error) {
			if name != "" {
				return nil, nbd.ErrUnknownExport
			}
			return &nbd.Export{Description: "1 MiB of zeros", Image: disk}, nil
		},
		List: func(ctx context.Context, peer nbd.Peer) []string { return []string{""} },
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go srv.Serve(ctx, l)
	// ... clients connect to nbd://ADDR/ ...
	if err := srv.Shutdown(context.Background()); err != nil {
		fmt.Println(err)
	}
}
