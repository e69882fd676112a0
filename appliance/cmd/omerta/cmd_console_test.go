package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// TestConsoleMoved: `omerta console`, with the flags it used to take,
// says where the console went, and --help no longer lists it.
func TestConsoleMoved(t *testing.T) {
	for _, args := range [][]string{
		{"console"},
		{"console", "--socket", "/run/omerta/omertad.sock", "--listen", "127.0.0.1:8443"},
	} {
		if err := run(context.Background(), args); !errors.Is(err, errConsoleMoved) {
			t.Errorf("omerta %s: %v, want errConsoleMoved", strings.Join(args, " "), err)
		}
	}
	root := newRootCmd()
	var help bytes.Buffer
	root.SetOut(&help)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`(?m)^\s+console\s`).MatchString(help.String()) {
		t.Errorf("omerta --help lists the console:\n%s", help.String())
	}
}
