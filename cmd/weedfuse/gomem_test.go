package main

import "testing"

func TestGoMemoryFor(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want goMemory
	}{
		{"defaults", nil, goMemory{limit: goMemoryLimit, percent: -1, warm: heapWarm}},
		{"GOGC set", map[string]string{"GOGC": "200"}, goMemory{limit: goMemoryLimit}},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, goMemory{}},
		{"both set", map[string]string{"GOGC": "off", "GOMEMLIMIT": "1GiB"}, goMemory{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := goMemoryFor(func(k string) string { return tc.env[k] })
			if got != tc.want {
				t.Errorf("goMemoryFor(%v) = %+v, want %+v", tc.env, got, tc.want)
			}
		})
	}
}
