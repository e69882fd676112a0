package ops

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Summary limits: how many sentences a caller may ask for, and how many
// keywords come back.
const (
	DefaultSentences = 3
	MaxSentences     = 50
	keywordCount     = 5
)

// Sentence is one sentence chosen for a summary. Index is its position in
// the text (from 0); Score is the sum of its content words' frequencies.
type Sentence struct {
	Index int    `json:"index"`
	Text  string `json:"text"`
	Score int    `json:"score"`
}

// Keyword is a content word and how often it occurs.
type Keyword struct {
	Word  string `json:"word"`
	Count int    `json:"count"`
}

// SummaryResult is an extractive summary: the chosen sentences in their
// original order, joined in Summary.
type SummaryResult struct {
	Op        string     `json:"op"`
	Summary   string     `json:"summary"`
	Sentences []Sentence `json:"sentences"`
	Total     int        `json:"total"`
	Keywords  []Keyword  `json:"keywords"`
}

type summarizeRequest struct {
	Text      *string `json:"text"`
	Sentences *int64  `json:"sentences"`
}

func runSummarize(_ Env, raw []byte) (any, error) {
	var req summarizeRequest
	if err := decodeStrict(raw, &req); err != nil {
		return nil, err
	}
	if req.Text == nil {
		return nil, errorf(CodeInvalidRequest, "text", "missing; the text to summarise is required")
	}
	n := DefaultSentences
	if req.Sentences != nil {
		if v := *req.Sentences; v < 1 || v > MaxSentences {
			return nil, errorf(CodeInvalidField, "sentences", "must be from 1 to %d, not %d", MaxSentences, v)
		}
		n = int(*req.Sentences)
	}
	return Summarize(*req.Text, n), nil
}

// Summarize picks the n sentences whose content words are most frequent in
// the whole text. Scores are integers and ties go to the earlier sentence,
// so the same text always gives the same summary.
func Summarize(text string, n int) *SummaryResult {
	sents := splitSentences(text)
	words := make([][]string, len(sents))
	freq := map[string]int{}
	for i, s := range sents {
		words[i] = contentWords(s)
		for _, w := range words[i] {
			freq[w]++
		}
	}
	order := make([]int, len(sents))
	scores := make([]int, len(sents))
	for i := range sents {
		order[i] = i
		for _, w := range words[i] {
			scores[i] += freq[w]
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return scores[order[a]] > scores[order[b]] })
	chosen := order[:min(n, len(order))]
	sort.Ints(chosen)
	res := &SummaryResult{Op: "summarize", Total: len(sents), Sentences: []Sentence{}, Keywords: topKeywords(freq)}
	texts := make([]string, 0, len(chosen))
	for _, i := range chosen {
		res.Sentences = append(res.Sentences, Sentence{Index: i, Text: sents[i], Score: scores[i]})
		texts = append(texts, sents[i])
	}
	res.Summary = strings.Join(texts, " ")
	return res
}

func topKeywords(freq map[string]int) []Keyword {
	all := make([]Keyword, 0, len(freq))
	for w, c := range freq {
		all = append(all, Keyword{Word: w, Count: c})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Count != all[j].Count {
			return all[i].Count > all[j].Count
		}
		return all[i].Word < all[j].Word
	})
	return all[:min(keywordCount, len(all))]
}

// abbreviations end in a full stop without ending the sentence.
var abbreviations = map[string]bool{
	"mr": true, "mrs": true, "ms": true, "dr": true, "prof": true, "sr": true,
	"jr": true, "st": true, "vs": true, "e.g": true, "i.e": true, "cf": true,
}

// splitSentences cuts text after '.', '!' or '?' (and any closing quotes or
// brackets) followed by white space, and at blank lines. White space inside
// a sentence is collapsed to single spaces.
func splitSentences(text string) []string {
	var out []string
	start := 0
	emit := func(end int) {
		if s := strings.Join(strings.Fields(text[start:end]), " "); s != "" {
			out = append(out, s)
		}
		start = end
	}
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		next := i + size
		switch {
		case r == '\n' && blankLineAt(text, next):
			emit(next)
		case r == '.' || r == '!' || r == '?':
			end := skipClosers(text, next)
			if (end == len(text) || isSpaceAt(text, end)) && !(r == '.' && endsInAbbreviation(text[start:i])) {
				emit(end)
			}
			next = end
		}
		i = next
	}
	emit(len(text))
	return out
}

func skipClosers(text string, i int) int {
	for i < len(text) && strings.IndexByte(`.!?"')]`, text[i]) >= 0 {
		i++
	}
	return i
}

func isSpaceAt(text string, i int) bool {
	r, _ := utf8.DecodeRuneInString(text[i:])
	return unicode.IsSpace(r)
}

// blankLineAt reports whether only spaces and tabs stand between i and the
// next newline.
func blankLineAt(text string, i int) bool {
	for ; i < len(text); i++ {
		switch text[i] {
		case ' ', '\t', '\r':
		case '\n':
			return true
		default:
			return false
		}
	}
	return false
}

// endsInAbbreviation looks back only as far as the longest abbreviation, so
// that a text of a million "Mr." stays linear.
func endsInAbbreviation(s string) bool {
	const longest = 4
	i := len(s)
	for i > 0 && len(s)-i <= longest && !isASCIISpace(s[i-1]) {
		i--
	}
	if len(s)-i > longest || (i > 0 && !isASCIISpace(s[i-1])) {
		return false
	}
	return abbreviations[strings.ToLower(s[i:])]
}

func isASCIISpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}

// contentWords returns the lower-cased words of s that carry meaning:
// letters and digits, at least two of them, not a stop word.
func contentWords(s string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		w = strings.ToLower(w)
		if utf8.RuneCountInString(w) >= 2 && !stopWords[w] {
			out = append(out, w)
		}
	}
	return out
}

var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a about above after again against all am an and any are as at be
		because been before being below between both but by can could did do does doing down during
		each few for from further had has have having he her here hers herself him himself his how i
		if in into is it its itself just me more most my myself no nor not now of off on once only or
		other our ours ourselves out over own same she should so some such than that the their theirs
		them themselves then there these they this those through to too under until up very was we
		were what when where which while who whom why will with would you your yours yourself
		yourselves also may might must shall us`) {
		m[w] = true
	}
	return m
}()
