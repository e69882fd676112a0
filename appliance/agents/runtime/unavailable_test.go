package runtime

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// Without containerd every call fails as ErrUnavailable (the API answers
// 503), quickly, rather than hanging or failing as something else.
func TestUnavailable(t *testing.T) {
	dir := t.TempDir()
	c, err := client.New(filepath.Join(dir, "none.sock"), client.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt, err := New(c, WithLogDir(filepath.Join(dir, "logs")), WithRunDir(filepath.Join(dir, "run")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, serr := rt.Status(ctx, "a1")
	_, lerr := rt.List(ctx)
	cerr := rt.Create(ctx, Spec{ID: "a1", Image: "x"})
	_, oerr := rt.Orphans(ctx, func(string) bool { return true })
	for name, err := range map[string]error{"status": serr, "list": lerr, "create": cerr, "orphans": oerr} {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
	}
	if ctx.Err() != nil {
		t.Error("the calls took the whole timeout")
	}
}

func TestNewRefuses(t *testing.T) {
	c, err := client.New("/nonexistent.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, opt := range map[string]Option{
		"bad namespace":   WithNamespace("a/b"),
		"relative logs":   WithLogDir("logs"),
		"relative runsc":  WithRunsc("runsc"),
		"zero cap":        WithMaxArchive(0),
		"no rotated logs": WithLogRotation(10, 0),
	} {
		if _, err := New(c, WithRunDir(t.TempDir()), opt); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := New(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil client: %v", err)
	}
}
