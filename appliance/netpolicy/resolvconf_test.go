package netpolicy

import (
	"errors"
	"slices"
	"testing"
)

func TestUpstreamsFromResolvConf(t *testing.T) {
	got, err := UpstreamsFromResolvConf("testdata/resolv.conf", DefaultSubnet)
	if want := []string{"127.0.0.53:53", "[2001:db8::53]:53", "192.0.2.53:53", "192.0.2.54:53"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("%v, %v; want %v", got, err, want)
	}
	if _, err := UpstreamsFromResolvConf("testdata/resolv-empty.conf", DefaultSubnet); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no nameserver: %v", err)
	}
	if _, err := UpstreamsFromResolvConf("testdata", DefaultSubnet); err == nil {
		t.Fatal("a directory was read")
	}
	c := validConfig()
	c.Upstreams = got
	if err := c.Validate(); err != nil {
		t.Fatalf("the result does not validate: %v", err)
	}
}
