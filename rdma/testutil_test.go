package rdma

import (
	"context"
	"time"
)

var timeZero time.Time

// staticLocator places every volume on the same volume servers.
type staticLocator []string

func (l staticLocator) Locations(context.Context, uint32) ([]string, error) { return l, nil }
