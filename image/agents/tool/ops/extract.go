package ops

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kinds of things Extract finds, in the order it looks for them: a URL's
// span hides the e-mail address inside it, a date's span hides its numbers.
const (
	KindURLs    = "urls"
	KindEmails  = "emails"
	KindDates   = "dates"
	KindNumbers = "numbers"
)

var allKinds = []string{KindURLs, KindEmails, KindDates, KindNumbers}

// MaxMatches caps the distinct matches reported per kind; the result says
// which kinds were cut short.
const MaxMatches = 1000

// Go's regexp is RE2: matching is linear in the input, so hostile text
// cannot make these patterns backtrack.
var (
	urlRe   = regexp.MustCompile(`(?i)\bhttps?://[^\s<>"'` + "`" + `{}|\\^\[\]]+`)
	emailRe = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}`)
	isoRe   = regexp.MustCompile(`\b(\d{4})-(\d{2})-(\d{2})\b`)
	yearRe  = regexp.MustCompile(`\b\d{4}\b`)
)

// Date is a calendar date found in text.
type Date struct {
	Text string `json:"text"`
	ISO  string `json:"iso"`
}

// Number is a number found in text. Value is absent when the number does
// not fit a float64.
type Number struct {
	Text  string   `json:"text"`
	Value *float64 `json:"value,omitempty"`
}

// ExtractResult lists distinct matches in order of first appearance.
type ExtractResult struct {
	Op        string   `json:"op"`
	URLs      []string `json:"urls,omitempty"`
	Emails    []string `json:"emails,omitempty"`
	Dates     []Date   `json:"dates,omitempty"`
	Numbers   []Number `json:"numbers,omitempty"`
	Truncated []string `json:"truncated,omitempty"`
}

type extractRequest struct {
	Text  *string  `json:"text"`
	Kinds []string `json:"kinds"`
}

func runExtract(_ Env, raw []byte) (any, error) {
	var req extractRequest
	if err := decodeStrict(raw, &req); err != nil {
		return nil, err
	}
	if req.Text == nil {
		return nil, errorf(CodeInvalidRequest, "text", "missing; the text to extract from is required")
	}
	return Extract(*req.Text, req.Kinds)
}

// Extract finds the requested kinds (all of them when kinds is empty) in
// text. An unknown kind is an invalid_field error naming its index.
func Extract(text string, kinds []string) (*ExtractResult, error) {
	want, err := wantKinds(kinds)
	if err != nil {
		return nil, err
	}
	res := &ExtractResult{Op: "extract"}
	var taken spans
	urls := scan(urlRe, text, &taken, trimURL)
	emails := scan(emailRe, text, &taken, nil)
	dates := scanDates(text, &taken)
	numbers := scanNumbers(text, &taken)
	if want[KindURLs] {
		res.URLs = capStrings(urls, KindURLs, res)
	}
	if want[KindEmails] {
		res.Emails = capStrings(emails, KindEmails, res)
	}
	if want[KindDates] {
		res.Dates = dates
		if len(dates) > MaxMatches {
			res.Dates, res.Truncated = dates[:MaxMatches], append(res.Truncated, KindDates)
		}
	}
	if want[KindNumbers] {
		res.Numbers = numbers
		if len(numbers) > MaxMatches {
			res.Numbers, res.Truncated = numbers[:MaxMatches], append(res.Truncated, KindNumbers)
		}
	}
	return res, nil
}

func wantKinds(kinds []string) (map[string]bool, error) {
	want := map[string]bool{}
	if len(kinds) == 0 {
		kinds = allKinds
	}
	for i, k := range kinds {
		if !contains(allKinds, k) {
			return nil, errorf(CodeInvalidField, fmt.Sprintf("kinds[%d]", i), "%q is not a kind; one of %v", k, allKinds)
		}
		want[k] = true
	}
	return want, nil
}

func capStrings(list []string, kind string, res *ExtractResult) []string {
	if len(list) > MaxMatches {
		res.Truncated = append(res.Truncated, kind)
		return list[:MaxMatches]
	}
	return list
}

// spans records byte ranges already claimed by an earlier kind, sorted by
// start and never overlapping, so a lookup is a binary search: hostile text
// may hold a hundred thousand matches.
type spans [][2]int

func (s spans) overlaps(start, end int) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i][1] > start })
	return i < len(s) && s[i][0] < end
}

// add merges claimed (which overlaps nothing already in s) into s.
func (s *spans) add(claimed spans) {
	*s = append(*s, claimed...)
	sort.Slice(*s, func(i, j int) bool { return (*s)[i][0] < (*s)[j][0] })
}

// scan returns the distinct matches of re outside taken, claiming their
// spans. trim may shorten a match (trailing punctuation after a URL).
func scan(re *regexp.Regexp, text string, taken *spans, trim func(string) string) []string {
	var out []string
	seen := map[string]bool{}
	var claimed spans
	for _, loc := range re.FindAllStringIndex(text, -1) {
		m := text[loc[0]:loc[1]]
		if trim != nil {
			m = trim(m)
		}
		end := loc[0] + len(m)
		if m == "" || taken.overlaps(loc[0], end) {
			continue
		}
		claimed = append(claimed, [2]int{loc[0], end})
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	taken.add(claimed)
	return out
}

// trimURL drops punctuation that ends a sentence rather than the URL, and
// a closing parenthesis that has no opening one inside the URL.
func trimURL(u string) string {
	for u != "" {
		last := u[len(u)-1]
		switch {
		case strings.IndexByte(".,;:!?'\"", last) >= 0:
			u = u[:len(u)-1]
		case last == ')' && strings.Count(u, "(") < strings.Count(u, ")"):
			u = u[:len(u)-1]
		default:
			return u
		}
	}
	return u
}

type dateMatch struct {
	start, end int
	date       Date
}

func scanDates(text string, taken *spans) []Date {
	var found []dateMatch
	for _, m := range isoRe.FindAllStringSubmatchIndex(text, -1) {
		year, _ := strconv.Atoi(text[m[2]:m[3]])
		mon, _ := strconv.Atoi(text[m[4]:m[5]])
		day, _ := strconv.Atoi(text[m[6]:m[7]])
		found = addDate(found, text[m[0]:m[1]], m[0], year, mon, day)
	}
	// Written dates ("March 5th, 2025", "1 Feb 2026") end in their year:
	// each four-digit year is parsed backwards by hand, in constant time,
	// where a regexp with the month names runs at about 1 MB/s.
	for _, y := range yearRe.FindAllStringIndex(text, -1) {
		if start, day, mon, ok := writtenDateBefore(text, y[0]); ok {
			year, _ := strconv.Atoi(text[y[0]:y[1]])
			found = addDate(found, text[start:y[1]], start, year, mon, day)
		}
	}
	// Stable: at equal starts the ISO form, found first, wins.
	sort.SliceStable(found, func(i, j int) bool { return found[i].start < found[j].start })
	var out []Date
	var claimed spans
	seen := map[string]bool{}
	lastEnd := 0
	for _, f := range found {
		if f.start < lastEnd || taken.overlaps(f.start, f.end) {
			continue
		}
		lastEnd = f.end
		claimed = append(claimed, [2]int{f.start, f.end})
		if !seen[f.date.Text] {
			seen[f.date.Text] = true
			out = append(out, f.date)
		}
	}
	taken.add(claimed)
	return out
}

// addDate validates one match and appends it; February 30th and month 13
// are not dates.
func addDate(found []dateMatch, match string, start, year, mon, day int) []dateMatch {
	if year < 1 || mon < 1 || mon > 12 || day < 1 {
		return found
	}
	t := time.Date(year, time.Month(mon), day, 0, 0, 0, 0, time.UTC)
	if t.Day() != day || int(t.Month()) != mon {
		return found
	}
	return append(found, dateMatch{start: start, end: start + len(match), date: Date{Text: match, ISO: t.Format("2006-01-02")}})
}

// writtenDateBefore parses, backwards from the year at ys, "MONTH DAY[,]
// YEAR" or "DAY MONTH[,] YEAR": a month name or abbreviation (with an
// optional full stop), a day of one or two digits (with an optional st, nd,
// rd or th), one to four white-space characters between the parts.
func writtenDateBefore(text string, ys int) (start, day, mon int, ok bool) {
	i, ok := backSpace(text, ys)
	if !ok {
		return 0, 0, 0, false
	}
	if i > 0 && text[i-1] == ',' {
		i--
	}
	if j, d, ok := backDay(text, i); ok { // month day, year
		if j, ok = backSpace(text, j); ok {
			if j, m, ok := backMonth(text, j); ok && wordStart(text, j) {
				return j, d, m, true
			}
		}
	}
	if j, m, ok := backMonth(text, i); ok { // day month year
		if j, ok = backSpace(text, j); ok {
			if j, d, ok := backDay(text, j); ok && wordStart(text, j) {
				return j, d, m, true
			}
		}
	}
	return 0, 0, 0, false
}

// backSpace steps back over one to four white-space bytes before i.
func backSpace(text string, i int) (int, bool) {
	j := i
	for j > 0 && i-j < 4 && isASCIISpace(text[j-1]) {
		j--
	}
	return j, j < i && (j == 0 || !isASCIISpace(text[j-1]))
}

// backDay steps back over a day of the month ending at i: one or two digits
// (not three) and an optional ordinal suffix.
func backDay(text string, i int) (int, int, bool) {
	if i >= 3 && isDigit(text[i-3]) {
		switch strings.ToLower(text[i-2 : i]) {
		case "st", "nd", "rd", "th":
			i -= 2
		}
	}
	j := i
	for j > 0 && i-j < 2 && isDigit(text[j-1]) {
		j--
	}
	if j == i || (j > 0 && isDigit(text[j-1])) {
		return 0, 0, false
	}
	d, _ := strconv.Atoi(text[j:i])
	return j, d, true
}

var monthNames = map[string]int{
	"january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
	"august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
	"jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
	"sept": 9, "oct": 10, "nov": 11, "dec": 12,
}

// backMonth steps back over a month name ending at i, with an optional
// full stop after it.
func backMonth(text string, i int) (int, int, bool) {
	if i > 0 && text[i-1] == '.' {
		i--
	}
	j := i
	for j > 0 && i-j < len("september") && isASCIILetter(text[j-1]) {
		j--
	}
	mon, ok := monthNames[strings.ToLower(text[j:i])]
	return j, mon, ok && j < i
}

func isASCIILetter(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }

// wordStart reports whether i starts a word in text.
func wordStart(text string, i int) bool {
	r, _ := utf8.DecodeLastRuneInString(text[:i])
	return i == 0 || !isWordRune(r)
}

// scanNumbers finds integers and decimals, with an optional sign and
// thousands separators ("-1,234.5"), outside the spans taken. A hand-written
// scanner: the equivalent regexp runs at under 2 MB/s on text without digits.
func scanNumbers(text string, taken *spans) []Number {
	var out []Number
	seen := map[string]bool{}
	for i := 0; i < len(text); {
		start, end, ok := numberAt(text, i)
		if !ok {
			i++
			continue
		}
		i = end
		if r, _ := utf8.DecodeLastRuneInString(text[:start]); start > 0 && isWordRune(r) {
			if text[start] != '-' && text[start] != '+' {
				continue // the tail of a word or identifier: x86, abc123
			}
			start++ // "10-5": a range or a subtraction, not a negative five
		}
		m := text[start:end]
		if taken.overlaps(start, end) || seen[m] {
			continue
		}
		seen[m] = true
		n := Number{Text: m}
		if v, err := strconv.ParseFloat(strings.ReplaceAll(m, ",", ""), 64); err == nil {
			n.Value = &v
		}
		out = append(out, n)
	}
	return out
}

// numberAt matches [-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)? at i, preferring
// the grouped form as a leftmost-first regexp would.
func numberAt(text string, i int) (start, end int, ok bool) {
	j := i
	if j < len(text) && (text[j] == '-' || text[j] == '+') {
		j++
	}
	k := skipDigits(text, j)
	if k == j {
		return 0, 0, false
	}
	if k-j <= 3 {
		g := k
		for g+4 <= len(text) && text[g] == ',' && skipDigits(text, g+1) >= g+4 {
			g += 4
		}
		k = g
	}
	if k+1 < len(text) && text[k] == '.' && isDigit(text[k+1]) {
		k = skipDigits(text, k+1)
	}
	return i, k, true
}

func skipDigits(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}
