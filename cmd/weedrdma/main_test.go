package main

import "testing"

func TestCheckExposure(t *testing.T) {
	for _, c := range []struct {
		listen                 string
		secret, mtls, insecure bool
		ok                     bool
	}{
		{"127.0.0.1:18515", false, false, false, true},
		{"[::1]:18515", false, false, false, true},
		{"localhost:18515", false, false, false, true},
		{":18515", false, false, false, false},
		{"0.0.0.0:18515", false, false, false, false},
		{"10.0.0.5:18515", false, false, false, false},
		{":18515", true, false, false, true},
		{":18515", false, true, false, true},
		{":18515", false, false, true, true},
		{"nonsense", false, false, false, false},
	} {
		err := checkExposure(c.listen, c.secret, c.mtls, c.insecure)
		if (err == nil) != c.ok {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
