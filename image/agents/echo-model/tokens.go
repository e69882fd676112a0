package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tokenize splits s into the echo model's tokens: a run of letters and
// digits, or one other non-space character, each carrying the white space
// before it (and the last one the white space after it), so that the
// tokens joined are s again and a stream of them rebuilds the text. The
// rule is fixed so that usage figures are predictable: "Hello, world!" is
// 4 tokens ("Hello", ",", " world", "!").
func tokenize(s string) []string {
	var toks []string
	start := 0
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unicode.IsSpace(r) {
			i += n
			continue
		}
		end := i + n
		if isWord(r) {
			for end < len(s) {
				r2, n2 := utf8.DecodeRuneInString(s[end:])
				if !isWord(r2) {
					break
				}
				end += n2
			}
		}
		toks = append(toks, s[start:end])
		start, i = end, end
	}
	if start < len(s) {
		if len(toks) == 0 {
			return nil // only white space: no tokens
		}
		toks[len(toks)-1] += s[start:]
	}
	return toks
}

func isWord(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

func countTokens(s string) int { return len(tokenize(s)) }

// embed is a deterministic unit vector of dims dimensions for text: each
// token, lower-cased without its white space, adds ±1 at two positions
// chosen by its SHA-256, so equal texts give equal vectors and texts that
// share words point the same way (a bag of words, hashed). A text of only
// white space is the zero vector.
func embed(text string, dims int) []float32 {
	v := make([]float64, dims)
	for _, tok := range tokenize(text) {
		h := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(tok))))
		for k := 0; k < 2; k++ {
			idx := binary.BigEndian.Uint32(h[4*k:]) % uint32(dims)
			if h[8+k]&1 == 0 {
				v[idx]++
			} else {
				v[idx]--
			}
		}
	}
	var norm float64
	for _, x := range v {
		norm += x * x
	}
	out := make([]float32, dims)
	if norm == 0 {
		return out
	}
	norm = math.Sqrt(norm)
	for i, x := range v {
		out[i] = float32(x / norm)
	}
	return out
}

// base64Floats is OpenAI's base64 encoding of an embedding: the float32
// values little-endian, standard base64.
func base64Floats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}
