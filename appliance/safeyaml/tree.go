package safeyaml

import (
	"fmt"
	"strconv"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// checkTree measures the parsed document exactly: depth, value count and
// the length of every sequence. It runs before decoding, so a document over
// a limit is never turned into Go values.
func checkTree(body ast.Node, lim Limits) error {
	w := treeWalk{lim: lim}
	return w.walk(body, "", 1)
}

type treeWalk struct {
	lim   Limits
	nodes int
}

func (w *treeWalk) walk(n ast.Node, path string, depth int) error {
	if n == nil {
		return nil
	}
	w.nodes++
	if w.nodes > w.lim.MaxNodes {
		return errAt(posOf(n.GetToken()), path, fmt.Sprintf("more than %d values in the document are not accepted", w.lim.MaxNodes), ErrTooManyNodes)
	}
	switch x := n.(type) {
	case *ast.MappingNode:
		if depth > w.lim.MaxDepth {
			return w.tooDeep(n, path)
		}
		if len(x.Values) > w.lim.MaxMapLen {
			return errAt(posOf(n.GetToken()), path, fmt.Sprintf("a mapping of %d entries is not accepted; at most %d", len(x.Values), w.lim.MaxMapLen), ErrMappingTooLong)
		}
		for _, mv := range x.Values {
			if err := w.entry(mv, path, depth); err != nil {
				return err
			}
		}
	case *ast.MappingValueNode:
		if depth > w.lim.MaxDepth {
			return w.tooDeep(n, path)
		}
		return w.entry(x, path, depth)
	case *ast.SequenceNode:
		if depth > w.lim.MaxDepth {
			return w.tooDeep(n, path)
		}
		if len(x.Values) > w.lim.MaxSeqLen {
			return errAt(posOf(x.Start), path, fmt.Sprintf("a list of %d items is not accepted; at most %d", len(x.Values), w.lim.MaxSeqLen), ErrSequenceTooLong)
		}
		for i, v := range x.Values {
			if err := w.walk(v, index(path, i), depth+1); err != nil {
				return err
			}
		}
	case *ast.MappingKeyNode:
		return w.walk(x.Value, path, depth)
	case *ast.AnchorNode, *ast.AliasNode, *ast.MergeKeyNode:
		// checkTokens refuses these already; the tree is checked again
		// so that this function alone is enough.
		return errAt(posOf(n.GetToken()), path, "anchors, aliases and merge keys are not accepted", ErrAlias)
	case *ast.TagNode:
		return errAt(posOf(n.GetToken()), path, "tags (!name) are not accepted; quote the value instead", ErrTag)
	}
	return nil
}

func (w *treeWalk) entry(mv *ast.MappingValueNode, path string, depth int) error {
	if err := w.walk(mv.Key, path, depth+1); err != nil {
		return err
	}
	return w.walk(mv.Value, child(path, mv.Key), depth+1)
}

func (w *treeWalk) tooDeep(n ast.Node, path string) error {
	return errAt(posOf(n.GetToken()), path, fmt.Sprintf("nesting deeper than %d levels is not accepted", w.lim.MaxDepth), ErrTooDeep)
}

// child is the path of the value under key in the mapping at path.
func child(path string, key ast.MapKeyNode) string {
	k := keyText(key)
	if path == "" {
		return k
	}
	return path + "." + k
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// keyText is a key as a path element: its text when it is a scalar, with
// anything unprintable escaped.
func keyText(key ast.MapKeyNode) string {
	switch k := key.(type) {
	case *ast.StringNode:
		return shorten(escape(k.Value), maxKeyText)
	case nil:
		return "?"
	}
	if tk := key.GetToken(); tk != nil {
		return shorten(escape(tk.Value), maxKeyText)
	}
	return "?"
}

// fieldAt returns the path of the node whose token is tk: the value's path
// for a value, the key's path for a key. "" when not found (or the top).
func fieldAt(body ast.Node, tk *token.Token) string {
	f := finder{want: tk}
	f.find(body, "", 0)
	return f.path
}

type finder struct {
	want  *token.Token
	path  string
	found bool
}

func (f *finder) match(n ast.Node) bool {
	if n == nil {
		return false
	}
	got := n.GetToken()
	if got == f.want {
		return true
	}
	return got != nil && got.Position != nil && f.want.Position != nil &&
		got.Position.Line == f.want.Position.Line && got.Position.Column == f.want.Position.Column
}

func (f *finder) find(n ast.Node, path string, depth int) {
	if f.found || n == nil || depth > 2*maxFindDepth {
		return
	}
	if f.match(n) {
		f.path, f.found = path, true
		return
	}
	switch x := n.(type) {
	case *ast.MappingNode:
		for _, mv := range x.Values {
			f.find(mv, path, depth+1)
		}
	case *ast.MappingValueNode:
		p := child(path, x.Key)
		if f.match(x.Key) {
			f.path, f.found = p, true
			return
		}
		f.find(x.Value, p, depth+1)
	case *ast.SequenceNode:
		for i, v := range x.Values {
			f.find(v, index(path, i), depth+1)
		}
	case *ast.MappingKeyNode:
		f.find(x.Value, path, depth+1)
	}
}

// maxFindDepth bounds fieldAt's recursion on its own, although the trees it
// sees have passed checkTree.
const maxFindDepth = 1024
