package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// variant is one command line to boot.
type variant struct {
	name    string
	cmdline string
	without string // the parameter(s) left out of the image's line, if any
}

// kept are the parameters every variant has: the console and what the
// initramfs ignores. Everything else on the image's line is measured.
func kept(tok string) bool {
	key, _, _ := strings.Cut(tok, "=")
	return key == "rw" || key == "console" || key == "loglevel" || key == "panic" || strings.HasPrefix(key, "systemd.")
}

// group is the name a parameter is measured under: audit= and
// audit_backlog_limit= go together (the limit means nothing alone).
func group(tok string) string {
	key, _, _ := strings.Cut(tok, "=")
	if strings.HasPrefix(key, "audit") {
		return "audit"
	}
	return tok
}

// variantsOf returns the image's line, a stock line (only the kept
// parameters) and the image's line without each group in turn.
func variantsOf(cmdline string) []variant {
	toks := strings.Fields(cmdline)
	var stock, groups []string
	members := map[string][]string{}
	for _, t := range toks {
		if kept(t) {
			stock = append(stock, t)
			continue
		}
		g := group(t)
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
		members[g] = append(members[g], t)
	}
	out := []variant{{name: "image", cmdline: cmdline}, {name: "stock", cmdline: strings.Join(stock, " ")}}
	for _, g := range groups {
		rest := slices.DeleteFunc(slices.Clone(toks), func(t string) bool { return !kept(t) && group(t) == g })
		out = append(out, variant{name: "without " + g, cmdline: strings.Join(rest, " "), without: strings.Join(members[g], " ")})
	}
	return out
}

// results is what out/cmdline-bench.json holds.
type results struct {
	Cmdline   string              `json:"image_cmdline"`
	Accel     string              `json:"accelerator"`
	Rounds    int                 `json:"rounds"`
	Medians   map[string]sample   `json:"medians"`
	Samples   map[string][]sample `json:"samples"`
	Costs     []cost              `json:"costs"`
	Hardening sample              `json:"image_over_stock"`
}

// cost is what one parameter adds to the image's line: the image's median
// over the median without it, minus one (0.25 is 25 % slower with it).
type cost struct {
	Param string `json:"param"`
	sample
}

func summarise(cmdline string, o options, variants []variant, samples map[string][]sample) results {
	res := results{Cmdline: cmdline, Accel: o.accel, Rounds: o.rounds, Medians: map[string]sample{}, Samples: samples}
	for _, v := range variants {
		res.Medians[v.name] = medianOf(samples[v.name])
	}
	img := res.Medians["image"]
	res.Hardening = ratio(img, res.Medians["stock"])
	for _, v := range variants {
		if v.without != "" {
			res.Costs = append(res.Costs, cost{Param: v.without, sample: ratio(img, res.Medians[v.name])})
		}
	}
	return res
}

func medianOf(ss []sample) sample {
	pick := func(f func(sample) float64) float64 {
		xs := make([]float64, 0, len(ss))
		for _, s := range ss {
			xs = append(xs, f(s))
		}
		slices.Sort(xs)
		if len(xs) == 0 {
			return 0
		}
		if len(xs)%2 == 1 {
			return xs[len(xs)/2]
		}
		return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return sample{
		Boot:     pick(func(s sample) float64 { return s.Boot }),
		Exec:     pick(func(s sample) float64 { return s.Exec }),
		Syscalls: pick(func(s sample) float64 { return s.Syscalls }),
		Pages:    pick(func(s sample) float64 { return s.Pages }),
	}
}

// ratio is a/b - 1 per figure (0 where b is 0).
func ratio(a, b sample) sample {
	r := func(x, y float64) float64 {
		if y == 0 {
			return 0
		}
		return x/y - 1
	}
	return sample{Boot: r(a.Boot, b.Boot), Exec: r(a.Exec, b.Exec), Syscalls: r(a.Syscalls, b.Syscalls), Pages: r(a.Pages, b.Pages)}
}

func (res results) print(w io.Writer) {
	fmt.Fprintf(w, "cmdlinebench: medians of %d rounds under %s (seconds: kernel boot to /init; 200 fork+exec; 200k read+write; 512 MiB tmpfs written and freed)\n", res.Rounds, res.Accel)
	fmt.Fprintf(w, "  %-36s %8s %8s %8s %8s\n", "what it adds", "boot", "exec", "syscall", "pages")
	row := func(name string, s sample) {
		fmt.Fprintf(w, "  %-36s %+7.0f%% %+7.0f%% %+7.0f%% %+7.0f%%\n", name, 100*s.Boot, 100*s.Exec, 100*s.Syscalls, 100*s.Pages)
	}
	row("the image's line over a stock one", res.Hardening)
	for _, c := range res.Costs {
		row(c.Param, c.sample)
	}
}
