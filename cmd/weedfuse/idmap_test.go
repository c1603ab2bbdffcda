package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseIDMap(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    map[uint32]uint32 // filer id → local id
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "1000:0", want: map[uint32]uint32{0: 1000}},
		{in: "1000:0,1001:500", want: map[uint32]uint32{0: 1000, 500: 1001}},
		{in: " 1000:0 , 7:8", want: map[uint32]uint32{0: 1000, 8: 7}},
		{in: "1000", wantErr: true},
		{in: "a:0", wantErr: true},
		{in: "0:b", wantErr: true},
		{in: "0:4294967296", wantErr: true},
		{in: "1000:0,", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseIDMap("map.uid", tc.in)
			if tc.wantErr {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "-map.uid")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
