package ops

import (
	"encoding/json"
	"sort"
	"strconv"
)

// flattener joins nested keys with sep. Every key and leaf it emits counts
// against budget: a deep document with long keys repeats each key prefix
// once per leaf below it.
type flattener struct {
	sep    string
	out    map[string]any
	budget int
}

func flatten(doc any, sep string) (any, error) {
	switch doc.(type) {
	case map[string]any, []any:
	default:
		return nil, errorf(CodeInvalidField, "flatten", "needs the document to be an object or an array, not %s", describe(doc))
	}
	f := &flattener{sep: sep, out: map[string]any{}, budget: maxTransformBytes}
	if err := f.walk("", doc, true); err != nil {
		return nil, err
	}
	return f.out, nil
}

func (f *flattener) walk(prefix string, v any, top bool) error {
	if raw, ok := v.(json.RawMessage); ok {
		// A value from pick, still encoded: decode it to descend.
		d, err := decodeValue(raw)
		if err != nil {
			return err
		}
		v = d
	}
	switch c := v.(type) {
	case map[string]any:
		if len(c) > 0 || top {
			keys := make([]string, 0, len(c))
			for k := range c {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if err := f.walk(f.join(prefix, k, top), c[k], false); err != nil {
					return err
				}
			}
			return nil
		}
	case []any:
		if len(c) > 0 || top {
			for i, e := range c {
				if err := f.walk(f.join(prefix, strconv.Itoa(i), top), e, false); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return f.leaf(prefix, v)
}

func (f *flattener) join(prefix, key string, top bool) string {
	if top {
		return key
	}
	return prefix + f.sep + key
}

// leaf stores one value; empty objects and arrays are leaves too, so that
// flattening keeps them.
func (f *flattener) leaf(key string, v any) error {
	if _, dup := f.out[key]; dup {
		return errorf(CodeConflict, "flatten", "the key %q comes out twice; choose another separator", key)
	}
	size := len(key) + 8
	if s, ok := v.(string); ok {
		size += len(s)
	} else if n, ok := v.(json.Number); ok {
		size += len(n)
	}
	if f.budget -= size; f.budget < 0 {
		return errorf(CodeOutputTooLarge, "flatten", "the flattened document exceeds %d bytes", maxTransformBytes)
	}
	f.out[key] = v
	return nil
}
