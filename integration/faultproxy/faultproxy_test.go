package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestExactFaultproxy(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 1000)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(body))
	}))
	defer backend.Close()
	p, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	get := func(rangeHeader string, timeout time.Duration) (int, []byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr()+"/3,01abcdef", nil)
		if rangeHeader != "" {
			req.Header.Set("Range", rangeHeader)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}

	if code, _, _ := get("", time.Second); code != http.StatusBadGateway {
		t.Fatalf("no target: status %d, want 502", code)
	}
	p.SetTarget(backend.Listener.Addr().String())

	code, got, err := get("", time.Second)
	if err != nil || code != 200 || !bytes.Equal(got, body) {
		t.Fatalf("pass: %d %v, equal %v", code, err, bytes.Equal(got, body))
	}
	code, got, err = get("bytes=100-199", time.Second)
	if err != nil || code != 206 || !bytes.Equal(got, body[100:200]) {
		t.Fatalf("pass ranged: %d %v %q", code, err, got)
	}

	p.SetFault(Flip, RangedGet, 1)
	code, got, err = get("", time.Second)
	if err != nil || code != 200 || !bytes.Equal(got, body) {
		t.Fatalf("flip of ranged GETs hit a whole GET: %d %v", code, err)
	}
	_, got, err = get("bytes=100-199", time.Second)
	if err != nil || len(got) != 100 || got[50] != body[150]^0xFF || !bytes.Equal(got[:50], body[100:150]) || !bytes.Equal(got[51:], body[151:200]) {
		t.Fatalf("flip: %v %q", err, got)
	}
	if _, got, _ = get("bytes=100-199", time.Second); !bytes.Equal(got, body[100:200]) {
		t.Fatal("flip applied more than once")
	}

	p.SetFault(Truncate, nil, 0)
	if _, got, err = get("", time.Second); !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != len(body)/2 {
		t.Fatalf("truncate: %v after %d bytes", err, len(got))
	}

	p.SetFault(Stall, AnyGet, 0)
	start := time.Now()
	_, got, err = get("", 300*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || len(got) != len(body)/2 || time.Since(start) > 5*time.Second {
		t.Fatalf("stall: %v after %d bytes in %v", err, len(got), time.Since(start))
	}

	p.SetFault(Unavailable, nil, 0)
	if code, _, _ = get("", time.Second); code != http.StatusServiceUnavailable {
		t.Fatalf("unavailable: %d", code)
	}
	p.SetFault(Pass, nil, 0)
	if _, got, _ = get("", time.Second); !bytes.Equal(got, body) {
		t.Fatal("pass after faults")
	}
	s := p.Stats()
	if s.Requests != 10 || s.Faulted != 4 || s.Ranged != 3 || s.Whole != 7 {
		t.Fatalf("stats: %v", s)
	}
}
