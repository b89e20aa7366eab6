// Command gitblk serves a git commit's tree as a tar or FAT block device
// over NBD, shows it through FUSE, or writes it to a file.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal asks for a clean stop; restoring the default
		// handling lets a second one end the process at once.
		<-ctx.Done()
		stop()
	}()
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}
