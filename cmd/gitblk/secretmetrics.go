package main

import (
	"time"

	"github.com/gitblk/gitblk/nbd"
)

// secretLabel is the export name that metrics use for every secret export.
// The metrics listener and the status line are read by more than the
// clients a secret export admits (a Prometheus server, systemctl status),
// and NBD hides secret names from everyone it refuses: their series must
// not name them. /status and gitblk_export_info leave them out.
const secretLabel = "(secret)"

// secretsHidden passes NBD events on with secret export names replaced.
type secretsHidden struct {
	nbd.Observer
	s *server
}

// hideSecrets wraps o so that it never sees a secret export's name.
func hideSecrets(o nbd.Observer, s *server) nbd.Observer { return secretsHidden{o, s} }

// name is export's name for metrics: secretLabel when the current config
// serves it from a secret export.
func (o secretsHidden) name(export string) string {
	if le, _, _, err := o.s.cur.Load().lookup(export); err == nil && le.x.Secret {
		return secretLabel
	}
	return export
}

func (o secretsHidden) ExportChosen(p nbd.Peer, export string) {
	o.Observer.ExportChosen(p, o.name(export))
}

func (o secretsHidden) ConnClosed(p nbd.Peer, export string) {
	if export != "" {
		export = o.name(export)
	}
	o.Observer.ConnClosed(p, export)
}

func (o secretsHidden) Request(export, cmd string, bytes int64, d time.Duration, err error) {
	o.Observer.Request(o.name(export), cmd, bytes, d, err)
}
