package store

import (
	"fmt"
	"testing"

	"github.com/mattn/go-sqlite3"
)

// The check falls back to a private copy only on SQLITE_PROTOCOL, however
// deeply wrapped; corruption and every other error stand.
func TestIsLockingProtocol(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("checking integrity of x: %w", sqlite3.Error{Code: sqlite3.ErrProtocol}), true},
		{fmt.Errorf("checking integrity of x: %w", sqlite3.Error{Code: sqlite3.ErrCorrupt}), false},
		{fmt.Errorf("checking integrity of x: %w", ErrCorrupt), false},
		{nil, false},
	} {
		if got := isLockingProtocol(tc.err); got != tc.want {
			t.Errorf("isLockingProtocol(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
