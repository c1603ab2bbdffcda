package rdma

import (
	"context"
	"time"
)

var timeZero time.Time

// staticLocator places every volume on the same volume servers. It serves
// both the Client and volume.Reader (which also invalidates).
type staticLocator []string

func (l staticLocator) Locations(context.Context, uint32) ([]string, error) { return l, nil }

func (l staticLocator) Invalidate(uint32) {}
