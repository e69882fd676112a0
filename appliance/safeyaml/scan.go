package safeyaml

import (
	"fmt"

	"github.com/goccy/go-yaml/token"
)

// The token scan stops only what would make the parser itself costly;
// checkTree then applies the exact limits with the field's path in the
// message. So the scan allows some slack over the limits: depth 64 or a
// mapping of 1000 entries cost go-yaml's parser nothing worth counting,
// while 30 000 of either cost it gigabytes.
const (
	scanDepthFactor  = 2
	scanMapLenFactor = 4
)

// checkTokens refuses, before anything is parsed, what would make the
// parser or the decoder do work out of proportion to the input: anchors and
// aliases (expanded at decode time), deep nesting and long mappings (the
// parser's cost grows with the square of either), too many values, and
// constructs a strict document does not need (tags, directives, a second
// document).
func checkTokens(tokens token.Tokens, lim Limits) error {
	s := scan{lim: lim}
	for _, tk := range tokens {
		if err := s.token(tk); err != nil {
			return err
		}
	}
	return nil
}

type scan struct {
	lim     Limits
	flow    []flowLevel  // open flow collections, innermost last
	block   []blockLevel // open block collections, by indentation
	nodes   int
	headers int          // "---" seen
	content bool         // a value has been seen
	ended   bool         // "..." closed the document
	prev    *token.Token // the last token that is not a comment
}

type flowLevel struct {
	mapping bool
	entries int // "," seen, so entries+1 items
}

type blockLevel struct {
	col     int
	seq     bool
	entries int
}

func (s *scan) token(tk *token.Token) error {
	p := posOf(tk)
	if err := refused(tk, p); err != nil {
		return err
	}
	switch tk.Type {
	case token.CommentType, token.SpaceType:
		return nil
	case token.DocumentHeaderType:
		s.headers++
		if s.headers > 1 || s.content || s.ended {
			return errAt(p, "", "a second YAML document (---) is not accepted; the file must hold one document", ErrMultipleDocuments)
		}
		s.prev = tk
		return nil
	case token.DocumentEndType:
		s.ended = true
		s.prev = tk
		return nil
	}
	if s.ended {
		return errAt(p, "", "content after the end of the document (...) is not accepted; the file must hold one document", ErrMultipleDocuments)
	}
	s.content = true
	err := s.structure(tk, p)
	s.prev = tk
	return err
}

// refused names the constructs that are never accepted.
func refused(tk *token.Token, p tokenPos) error {
	switch tk.Type {
	case token.AnchorType, token.AliasType:
		return errAt(p, "", "anchors and aliases (&name, *name) are not accepted; write the value out", ErrAlias)
	case token.MergeKeyType:
		return errAt(p, "", "merge keys (<<) are not accepted; write the keys out", ErrAlias)
	case token.TagType:
		return errAt(p, "", "tags (!name) are not accepted; quote the value instead", ErrTag)
	case token.DirectiveType:
		return errAt(p, "", "directives (%YAML, %TAG) are not accepted", ErrDirective)
	case token.InvalidType:
		return errAt(p, "", escape(tk.Error), ErrSyntax)
	}
	return nil
}

// structure follows nesting and counts values and entries.
func (s *scan) structure(tk *token.Token, p tokenPos) error {
	depth := 0
	switch tk.Type {
	case token.SequenceStartType, token.MappingStartType:
		s.flow = append(s.flow, flowLevel{mapping: tk.Type == token.MappingStartType})
		depth = len(s.block) + len(s.flow)
		s.nodes++
	case token.SequenceEndType, token.MappingEndType:
		if len(s.flow) > 0 {
			s.flow = s.flow[:len(s.flow)-1]
		}
	case token.CollectEntryType:
		if n := len(s.flow); n > 0 {
			s.flow[n-1].entries++
			if err := s.checkLen(s.flow[n-1].mapping, s.flow[n-1].entries+1, p); err != nil {
				return err
			}
		}
	case token.SequenceEntryType, token.MappingKeyType, token.MappingValueType:
		if len(s.flow) > 0 {
			break
		}
		lv := s.enter(tk)
		depth = len(s.block)
		if err := s.checkLen(!lv.seq, lv.entries, p); err != nil {
			return err
		}
	default:
		s.nodes++
	}
	if depth > scanDepthFactor*s.lim.MaxDepth {
		return errAt(p, "", fmt.Sprintf("nesting deeper than %d levels is not accepted", s.lim.MaxDepth), ErrTooDeep)
	}
	if s.nodes > s.lim.MaxNodes {
		return errAt(p, "", fmt.Sprintf("more than %d values in the document are not accepted", s.lim.MaxNodes), ErrTooManyNodes)
	}
	return nil
}

func (s *scan) checkLen(mapping bool, n int, p tokenPos) error {
	if mapping && n > scanMapLenFactor*s.lim.MaxMapLen {
		return errAt(p, "", fmt.Sprintf("a mapping of more than %d entries is not accepted", s.lim.MaxMapLen), ErrMappingTooLong)
	}
	if !mapping && n > s.lim.MaxSeqLen*scanMapLenFactor {
		return errAt(p, "", fmt.Sprintf("a list of more than %d items is not accepted", s.lim.MaxSeqLen), ErrSequenceTooLong)
	}
	return nil
}

// enter follows the nesting of block collections from the columns of their
// indicators ("-" for a sequence entry, "?" or ":" for a mapping entry) the
// way the parser will build them, closely enough to stop a deep or long
// document before the parser sees it. It returns the level the indicator
// belongs to.
func (s *scan) enter(tk *token.Token) *blockLevel {
	seq := tk.Type == token.SequenceEntryType
	col := 0
	if tk.Position != nil {
		col = tk.Position.Column
	}
	// A mapping entry's level is its key's column, and the key is the
	// token before ":" when it is on the same line.
	if prev := s.prev; tk.Type == token.MappingValueType && prev != nil && prev.Position != nil && tk.Position != nil &&
		prev.Position.Line == tk.Position.Line && !isIndicator(prev) {
		col = prev.Position.Column
	}
	// "?" opens an entry that its ":" completes; count the ":" only.
	counts := tk.Type != token.MappingKeyType
	st := s.block
	for len(st) > 0 && st[len(st)-1].col > col {
		st = st[:len(st)-1]
	}
	if n := len(st); n > 0 && st[n-1].col == col && st[n-1].seq != seq {
		if seq {
			// "key:" then "- item" at the same indentation: a
			// sequence inside the mapping.
			st = append(st, blockLevel{col: col, seq: true})
		} else {
			// Back from such a sequence to its mapping.
			st = st[:n-1]
		}
	}
	if n := len(st); n == 0 || st[n-1].col < col || st[n-1].seq != seq {
		st = append(st, blockLevel{col: col, seq: seq})
	}
	s.block = st
	lv := &st[len(st)-1]
	if counts {
		lv.entries++
	}
	return lv
}

func isIndicator(tk *token.Token) bool {
	switch tk.Type {
	case token.SequenceEntryType, token.MappingKeyType, token.MappingValueType, token.DocumentHeaderType:
		return true
	}
	return false
}
