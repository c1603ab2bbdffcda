package rdma

import "testing"

func TestSidecarMap(t *testing.T) {
	tests := []struct {
		spec string
		vs   string
		want string // "" = no sidecar
	}{
		{":18515", "10.0.0.1:8080", "10.0.0.1:18515"},
		{":18515", "vol-3.example:8081", "vol-3.example:18515"},
		{":18515", "10.0.0.1:8080.18080", "10.0.0.1:18515"}, // ".grpcPort" suffix
		{":18515", "[fe80::1]:8080", "[fe80::1]:18515"},
		{"10.0.0.1:18515,10.0.0.2:18516", "10.0.0.2:8080", "10.0.0.2:18516"},
		{"10.0.0.1:18515,10.0.0.2:18516", "10.0.0.3:8080", ""},
		{"10.0.0.1:8080=10.0.0.9:1, 10.0.0.1:2,:3", "10.0.0.1:8080", "10.0.0.9:1"},
		{"10.0.0.1:8080=10.0.0.9:1, 10.0.0.1:2,:3", "10.0.0.1:8081", "10.0.0.1:2"},
		{"10.0.0.1:8080=10.0.0.9:1, 10.0.0.1:2,:3", "10.0.0.7:8080", "10.0.0.7:3"},
		{"127.0.0.1:8080=127.0.0.1:18515", "127.0.0.1:8080.18080", "127.0.0.1:18515"},
		{":18515", "no-port", ""},
	}
	for _, tc := range tests {
		m, err := ParseSidecars(tc.spec)
		if err != nil {
			t.Fatalf("%q: %v", tc.spec, err)
		}
		got, ok := m.Lookup(tc.vs)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("%q.Lookup(%q) = %q, %v; want %q", tc.spec, tc.vs, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"", " , ", "18515", ":0", ":x", "h:1=h2", "=h:1", ":1,:2", "h:99999"} {
		if _, err := ParseSidecars(bad); err == nil {
			t.Errorf("ParseSidecars(%q) accepted", bad)
		}
	}
	m, _ := ParseSidecars("b:2,:9,a:1=c:3,a:4")
	if s := m.String(); s != ":9,a:4,b:2,a:1=c:3" {
		t.Errorf("String() = %q", s)
	}
}
