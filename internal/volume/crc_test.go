package volume

import "testing"

func TestNeedleCRC(t *testing.T) {
	for _, tt := range []struct {
		header string
		sum    uint32
		ok     bool
	}{
		{`"5dfee6dc"`, 0x5dfee6dc, true},
		{`"0000000a"`, 10, true},
		{`"5DFEE6DC"`, 0x5dfee6dc, true},
		{``, 0, false},
		{`5dfee6dc`, 0, false},     // unquoted
		{`W/"5dfee6dc"`, 0, false}, // weak
		{`"5dfee6d"`, 0, false},
		{`"5dfee6dc0"`, 0, false},
		{`"5dfee6dg"`, 0, false},
		{`"+dfee6dc"`, 0, false},
		{`"d41d8cd98f00b204e9800998ecf8427e"`, 0, false}, // an MD5, as S3 gateways send
	} {
		sum, ok := NeedleCRC(tt.header)
		if sum != tt.sum || ok != tt.ok {
			t.Errorf("NeedleCRC(%s) = %#x, %v; want %#x, %v", tt.header, sum, ok, tt.sum, tt.ok)
		}
	}
}

func TestCRCMatches(t *testing.T) {
	data := []byte("123456789")
	var check uint32 = 0xe3069283 // CRC-32C's check value
	if !CRCMatches(data, check) {
		t.Error("raw CRC32C rejected")
	}
	if !CRCMatches(data, (check>>15|check<<17)+0xa282ead8) {
		t.Error("masked CRC32C rejected")
	}
	if CRCMatches(data, check^1) || CRCMatches([]byte("123456788"), check) {
		t.Error("a wrong CRC matched")
	}
}
