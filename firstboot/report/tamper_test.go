package report

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// mutation is one edit of the generic document, named for the failure message.
type mutation struct {
	name string
	doc  any
}

// clone deep-copies a generic JSON value.
func clone(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = clone(e)
		}
		return m
	case []any:
		a := make([]any, len(t))
		for i, e := range t {
			a[i] = clone(e)
		}
		return a
	}
	return v
}

// edit returns a copy of doc with the value at path replaced by f(old).
// f returning the sentinel deleteMe removes an object member or array element.
func edit(doc any, path []any, f func(any) any) any {
	if len(path) == 0 {
		return f(doc)
	}
	switch t := clone(doc).(type) {
	case map[string]any:
		k := path[0].(string)
		nv := edit(t[k], path[1:], f)
		if nv == deleteMe {
			delete(t, k)
		} else {
			t[k] = nv
		}
		return t
	case []any:
		i := path[0].(int)
		nv := edit(t[i], path[1:], f)
		if nv == deleteMe {
			return append(t[:i:i], t[i+1:]...)
		}
		t[i] = nv
		return t
	}
	panic("bad path")
}

type sentinel struct{}

var deleteMe any = &sentinel{}

func pathString(p []any) string {
	var b strings.Builder
	for _, e := range p {
		switch k := e.(type) {
		case string:
			b.WriteString("." + k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	return b.String()
}

// leafVariants are other values of the same kind and, where it matters, the
// same format, so a failure comes from the hashes and not only from a
// malformed value.
func leafVariants(v any) []any {
	switch t := v.(type) {
	case bool:
		return []any{!t}
	case json.Number:
		n, _ := t.Int64()
		return []any{json.Number(fmt.Sprint(n + 1)), json.Number(fmt.Sprint(n - 1))}
	case string:
		out := []any{t + "x"}
		if t != "" {
			out = append(out, "", flipChar(t))
		}
		if tm, err := time.Parse(time.RFC3339, t); err == nil {
			out = append(out, tm.Add(time.Second).UTC().Format(time.RFC3339))
		}
		return out
	case nil:
		return []any{json.Number("0"), map[string]any{}}
	}
	return nil
}

// flipChar changes the middle alphanumeric character to its neighbour in the
// same class (hex digits stay hex, base64 stays base64).
func flipChar(s string) string {
	b := []byte(s)
	for off := 0; off < len(b); off++ {
		i := (len(b)/2 + off) % len(b)
		switch c := b[i]; {
		case c >= '0' && c <= '8', c >= 'a' && c <= 'e', c >= 'A' && c <= 'Y':
			b[i]++
			return string(b)
		case c == '9', c == 'f', c == 'Z':
			b[i]--
			return string(b)
		}
	}
	return s + "!"
}

// mutations lists every single edit of doc: each leaf changed, each object
// member removed, an unknown member added to each object, and each array
// element removed, duplicated and swapped with its neighbour.
func mutations(doc any) []mutation {
	var out []mutation
	var walk func(v any, path []any)
	walk = func(v any, path []any) {
		p := append([]any(nil), path...)
		at := pathString(p)
		switch t := v.(type) {
		case map[string]any:
			out = append(out, mutation{"add member to " + at, edit(doc, p, func(o any) any {
				m := clone(o).(map[string]any)
				m["extra"] = "x"
				return m
			})})
			for k, e := range t {
				cp := append(append([]any(nil), p...), k)
				out = append(out, mutation{"remove " + pathString(cp), edit(doc, cp, func(any) any { return deleteMe })})
				walk(e, cp)
			}
		case []any:
			for i, e := range t {
				cp := append(append([]any(nil), p...), i)
				out = append(out, mutation{"remove " + pathString(cp), edit(doc, cp, func(any) any { return deleteMe })})
				out = append(out, mutation{"duplicate " + pathString(cp), edit(doc, p, func(o any) any {
					a := clone(o).([]any)
					return append(a[:i+1:i+1], append([]any{clone(a[i])}, a[i+1:]...)...)
				})})
				if i+1 < len(t) && !sameJSON(t[i], t[i+1]) {
					out = append(out, mutation{fmt.Sprintf("swap %s with next", pathString(cp)), edit(doc, p, func(o any) any {
						a := clone(o).([]any)
						a[i], a[i+1] = a[i+1], a[i]
						return a
					})})
				}
				walk(e, cp)
			}
		default:
			for _, nv := range leafVariants(v) {
				out = append(out, mutation{fmt.Sprintf("set %s = %v", at, nv), edit(doc, p, func(any) any { return nv })})
			}
		}
	}
	walk(doc, nil)
	return out
}

func sameJSON(a, b any) bool {
	ca, _ := canonical(nil, a)
	cb, _ := canonical(nil, b)
	return string(ca) == string(cb)
}

func TestVerifyFailsOnEveryEdit(t *testing.T) {
	_, data := sealed(t)
	pub := testKey(t).Public().(ed25519.PublicKey)
	doc, err := parseStrict(data)
	if err != nil {
		t.Fatal(err)
	}
	muts := mutations(doc)
	leaves := 0
	for _, m := range muts {
		if strings.HasPrefix(m.name, "set ") {
			leaves++
		}
		b, err := json.Marshal(m.doc)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if sameJSON(m.doc, doc) {
			continue // an edit that changed nothing, e.g. a swap of equal values
		}
		for _, key := range []ed25519.PublicKey{nil, pub} {
			if v, err := Verify(b, key); err == nil || v.OK() || v.Trusted {
				t.Errorf("%s: verified (key supplied: %v)", m.name, key != nil)
			}
		}
	}
	// The fixture has well over a hundred leaves; a walk that found few means
	// the test stopped testing.
	if leaves < 300 || len(muts) < 600 {
		t.Fatalf("only %d leaf edits and %d edits in all", leaves, len(muts))
	}
	t.Logf("%d edits (%d leaf edits), each refused", len(muts), leaves)
}

// recordsEdit applies f to the records array and re-serialises.
func recordsEdit(t *testing.T, data []byte, f func(recs []any, sig map[string]any) []any) []byte {
	t.Helper()
	doc, err := parseStrict(data)
	if err != nil {
		t.Fatal(err)
	}
	top := doc.(map[string]any)
	top["records"] = f(top["records"].([]any), top["signature"].(map[string]any))
	b, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The chain-level attacks, including the careful ones that also fix up
// seq, prev_hash, hash and chain_head: all must end at a failed check.
func TestVerifyFailsOnChainAttacks(t *testing.T) {
	_, data := sealed(t)
	pub := testKey(t).Public().(ed25519.PublicKey)

	// rechain makes the records a valid chain from the header again, as an
	// attacker who knows the scheme would, leaving only the signature.
	rechain := func(recs []any, sig map[string]any) []any {
		prev := sig["header_sha256"].(string)
		for i, r := range recs {
			m := r.(map[string]any)
			m["seq"] = json.Number(fmt.Sprint(i + 1))
			m["prev_hash"] = prev
			h, err := hashGeneric(m, "hash")
			if err != nil {
				t.Fatal(err)
			}
			m["hash"] = h
			prev = h
		}
		sig["chain_head"] = prev
		return recs
	}
	n := len(testReport().Records)
	cases := map[string]func(recs []any, sig map[string]any) []any{
		"reverse": func(recs []any, _ map[string]any) []any {
			for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
				recs[i], recs[j] = recs[j], recs[i]
			}
			return recs
		},
		"truncate to half":  func(recs []any, _ map[string]any) []any { return recs[:n/2] },
		"truncate to none":  func(recs []any, _ map[string]any) []any { return recs[:0] },
		"drop the first":    func(recs []any, _ map[string]any) []any { return recs[1:] },
		"truncate, rechain": func(recs []any, sig map[string]any) []any { return rechain(recs[:n-1], sig) },
		"delete, rechain": func(recs []any, sig map[string]any) []any {
			return rechain(append(recs[:3:3], recs[4:]...), sig)
		},
		"reorder, rechain": func(recs []any, sig map[string]any) []any {
			recs[0], recs[1] = recs[1], recs[0]
			return rechain(recs, sig)
		},
		"insert, rechain": func(recs []any, sig map[string]any) []any {
			extra := clone(recs[0]).(map[string]any)
			extra["id"] = "forged.control"
			return rechain(append(recs[:1:1], append([]any{extra}, recs[1:]...)...), sig)
		},
		"edit result, rechain": func(recs []any, sig map[string]any) []any {
			recs[3].(map[string]any)["result"] = "pass"
			return rechain(recs, sig)
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			b := recordsEdit(t, data, f)
			for _, key := range []ed25519.PublicKey{nil, pub} {
				if _, err := Verify(b, key); err == nil {
					t.Errorf("verified (key supplied: %v)", key != nil)
				}
			}
		})
	}
}

func TestVerifyFailsOnTruncatedFile(t *testing.T) {
	_, data := sealed(t)
	for n := 0; n < len(data)-1; n += 97 {
		if _, err := Verify(data[:n], nil); err == nil {
			t.Errorf("the first %d of %d bytes verified", n, len(data))
		}
	}
}
