package proxy

import (
	"crypto/tls"
	"testing"
	"time"
)

func TestNewTransport(t *testing.T) {
	defaults := NewTransport(TransportOptions{})
	tlsConf := &tls.Config{ServerName: "api.internal"}
	custom := NewTransport(TransportOptions{
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       time.Second,
		DialTimeout:           2 * time.Second,
		ResponseHeaderTimeout: 3 * time.Second,
		TLSClientConfig:       tlsConf,
	})
	tests := []struct {
		name      string
		got, want any
	}{
		{"MaxIdleConns", defaults.MaxIdleConns, 1024},
		{"MaxIdleConnsPerHost default", defaults.MaxIdleConnsPerHost, 256},
		{"IdleConnTimeout default", defaults.IdleConnTimeout, 90 * time.Second},
		{"ResponseHeaderTimeout default", defaults.ResponseHeaderTimeout, 60 * time.Second},
		{"TLSHandshakeTimeout", defaults.TLSHandshakeTimeout, 10 * time.Second},
		{"ExpectContinueTimeout", defaults.ExpectContinueTimeout, time.Second},
		{"ForceAttemptHTTP2", defaults.ForceAttemptHTTP2, true},
		{"no proxy from the environment", defaults.Proxy == nil, true},
		{"DialContext set", defaults.DialContext != nil, true},
		{"MaxIdleConnsPerHost", custom.MaxIdleConnsPerHost, 8},
		{"IdleConnTimeout", custom.IdleConnTimeout, time.Second},
		{"ResponseHeaderTimeout", custom.ResponseHeaderTimeout, 3 * time.Second},
		{"TLSClientConfig", custom.TLSClientConfig == tlsConf, true},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestBufferPool(t *testing.T) {
	var p bufferPool
	b := p.Get()
	if len(b) != copyBufferSize {
		t.Fatalf("len(Get()) = %d, want %d", len(b), copyBufferSize)
	}
	p.Put(b[:10])
	if got := p.Get(); len(got) != copyBufferSize {
		t.Errorf("len(Get()) after Put of a resliced buffer = %d, want %d", len(got), copyBufferSize)
	}
	p.Put(make([]byte, 5)) // foreign sizes are dropped
	if got := p.Get(); len(got) != copyBufferSize {
		t.Errorf("len(Get()) = %d, want %d", len(got), copyBufferSize)
	}
}
