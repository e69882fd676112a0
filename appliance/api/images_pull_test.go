package api

import (
	"context"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/apitype"
)

func TestImagePullRoute(t *testing.T) {
	const (
		ref   = "registry.test/agents/web:1"
		other = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	)
	ctx := context.Background()
	e := newAgentsEnv(t)
	e.rt.AddRemoteImage(runtime.Image{Name: ref, Digest: testDigest, Manifest: testDigest})
	for _, req := range []apitype.ImagePull{
		{}, {Ref: strings.Repeat("a", 513)}, {Ref: ref, Digest: "sha256:short"}, {Ref: ref, Digest: "md5:00"},
	} {
		if _, err := e.c.PullImage(ctx, req); statusOf(err) != 400 {
			t.Errorf("PullImage(%.80v) = %v, want 400", req, err)
		}
	}
	out, err := e.c.PullImage(ctx, apitype.ImagePull{Ref: ref, Digest: testDigest})
	if err != nil || out.Image.Name != ref || out.Image.Digest != testDigest {
		t.Fatalf("PullImage = %+v, %v", out, err)
	}
	if l, err := e.c.Images(ctx); err != nil || len(l.Images) != 2 {
		t.Errorf("Images after the pull = %+v, %v", l, err)
	}
	if _, err := e.c.PullImage(ctx, apitype.ImagePull{Ref: ref, Digest: other}); statusOf(err) != 400 {
		t.Errorf("pull pinned to another digest = %v, want 400", err)
	}
	if _, err := e.c.PullImage(ctx, apitype.ImagePull{Ref: "registry.test/agents/nope:1"}); statusOf(err) != 404 {
		t.Errorf("pull of an unknown image = %v, want 404", err)
	}
	e.rt.SetUnavailable(true)
	if _, err := e.c.PullImage(ctx, apitype.ImagePull{Ref: ref}); statusOf(err) != 503 {
		t.Errorf("pull while unavailable = %v, want 503", err)
	}
	e.rt.SetUnavailable(false)
	got := strings.Join(auditActions(t, e.st), "|")
	want := strings.Join([]string{rootActor + " image.pull " + ref, rootActor + " image.pull.refused " + ref,
		rootActor + " image.pull.refused registry.test/agents/nope:1", rootActor + " image.pull.refused " + ref}, "|")
	if got != want {
		t.Errorf("audit = %q\nwant %q", got, want)
	}
	e.rt.Calls()
	res := asUser(t, e.sock, []clientRequest{{"POST", "/api/v1/images/pull", `{"ref":"` + ref + `"}`}})
	if !strings.HasPrefix(res[0], "401 ") {
		t.Errorf("pull as nobody = %.200s, want 401", res[0])
	}
	for _, c := range e.rt.Calls() {
		if strings.HasPrefix(c, "pull ") {
			t.Errorf("a refused caller pulled: %v", c)
		}
	}
}
