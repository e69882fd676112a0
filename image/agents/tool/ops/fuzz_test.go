package ops

import (
	"strings"
	"testing"
	"time"
)

var textSeeds = []string{
	"Contact ops@example.com, see https://example.org/a_(b)). Due March 5th, 2025 or 2024-02-29.",
	"1,234.5 -3 +4 10-5 x86 3rd 1.5.6 99999999999999999999999999",
	"Sept. 30 2024; 1st  February, 2026; May 5, 2024-01-01",
	"Dr. Who met Mr. Smith. Then left!\n\nNew paragraph? e.g. this.",
	"\xff\xfe\u00a0\u0085 Jan\u00a01 2020",
}

// FuzzExtract: whatever the text, every match is a piece of it and every
// date's ISO form is a real calendar date.
func FuzzExtract(f *testing.F) {
	for _, s := range textSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		res, err := Extract(text, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, list := range [][]string{res.URLs, res.Emails} {
			for _, m := range list {
				if m == "" || !strings.Contains(text, m) {
					t.Fatalf("match %q is not in the text", m)
				}
			}
		}
		for _, d := range res.Dates {
			if !strings.Contains(text, d.Text) {
				t.Fatalf("date %q is not in the text", d.Text)
			}
			if _, err := time.Parse("2006-01-02", d.ISO); err != nil {
				t.Fatalf("date %q: ISO form %q: %v", d.Text, d.ISO, err)
			}
		}
		for _, n := range res.Numbers {
			if n.Text == "" || !strings.Contains(text, n.Text) {
				t.Fatalf("number %q is not in the text", n.Text)
			}
		}
	})
}

// FuzzSummarize: the summary is made of the text's sentences, in order, and
// never more of them than asked for.
func FuzzSummarize(f *testing.F) {
	for _, s := range textSeeds {
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, text string, n int) {
		if n < 1 || n > MaxSentences {
			n = DefaultSentences
		}
		res := Summarize(text, n)
		if len(res.Sentences) > n || len(res.Sentences) > res.Total {
			t.Fatalf("%d sentences for n=%d, total %d", len(res.Sentences), n, res.Total)
		}
		last := -1
		for _, s := range res.Sentences {
			if s.Index <= last || s.Index >= res.Total {
				t.Fatalf("sentence indexes out of order: %+v", res.Sentences)
			}
			last = s.Index
			for _, w := range strings.Fields(s.Text) {
				if !strings.Contains(text, w) {
					t.Fatalf("word %q of the summary is not in the text", w)
				}
			}
		}
	})
}
