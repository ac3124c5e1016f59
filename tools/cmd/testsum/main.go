// Command testsum reads `go test -json` streams on stdin and prints a short
// per-package report, the output of every failed test, and one closing line
// "N passed, N failed, N skipped". It exits 1 when anything failed, including
// a package that did not build.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	Elapsed    float64
	ImportPath string
}

type pkgResult struct {
	passed, failed, skipped int
	status                  string
	elapsed                 float64
}

func main() {
	pkgs := map[string]*pkgResult{}
	outputs := map[string]*strings.Builder{} // package/test -> output
	var failedTests []string
	var buildErrors []string
	var passed, failed, skipped int

	get := func(p string) *pkgResult {
		if pkgs[p] == nil {
			pkgs[p] = &pkgResult{}
		}
		return pkgs[p]
	}

	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if err := json.Unmarshal(line, &ev); err != nil || ev.Action == "" {
			// Not JSON: compiler errors and the like reach us as plain text.
			fmt.Println(string(line))
			continue
		}
		key := ev.Package + " " + ev.Test
		switch ev.Action {
		case "build-output":
			buildErrors = append(buildErrors, strings.TrimRight(ev.Output, "\n"))
		case "output":
			if outputs[key] == nil {
				outputs[key] = &strings.Builder{}
			}
			outputs[key].WriteString(ev.Output)
		case "pass", "fail", "skip":
			p := get(ev.Package)
			if ev.Test == "" {
				p.status, p.elapsed = ev.Action, ev.Elapsed
				if ev.Action == "fail" && p.failed == 0 {
					// A package that failed without a failing test: build error, panic in init, TestMain.
					failed++
					failedTests = append(failedTests, ev.Package+" "+ev.Test)
				}
				continue
			}
			if strings.Contains(ev.Test, "/") {
				continue // subtests roll up into their parent
			}
			switch ev.Action {
			case "pass":
				p.passed++
				passed++
			case "fail":
				p.failed++
				failed++
				failedTests = append(failedTests, key)
			case "skip":
				p.skipped++
				skipped++
			}
		}
	}

	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := pkgs[n]
		if p.passed+p.failed+p.skipped == 0 && p.status != "fail" {
			continue // packages without tests
		}
		fmt.Printf("%-4s %-60s %3d passed %3d failed %3d skipped  %s\n",
			strings.ToUpper(p.status), n, p.passed, p.failed, p.skipped,
			(time.Duration(p.elapsed * float64(time.Second))).Round(time.Millisecond))
	}
	for _, b := range buildErrors {
		fmt.Println(b)
	}
	for _, k := range failedTests {
		fmt.Printf("\n--- output of failed %s\n", k)
		if o := outputs[k]; o != nil {
			fmt.Print(tail(o.String(), 200))
		}
	}
	fmt.Printf("\n%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || len(buildErrors) > 0 {
		os.Exit(1)
	}
}

// tail keeps the last n lines: a failing integration test can print a lot.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return "...\n" + strings.Join(lines[len(lines)-n:], "")
}
