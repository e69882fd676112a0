// Command openapi writes the OpenAPI 3.1 document of omertad's API, every
// route of the table that authorises them (api.OpenAPIDocument), as a fully
// wired omertad serves it at /api/v1/openapi.json. scripts/openapi-lint.sh
// lints what it writes.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/atomicfile"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "openapi:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("o", "", "write the document to this file (default: standard output)")
	flag.Parse()
	doc, err := api.OpenAPIDocument()
	if err != nil {
		return err
	}
	if *out == "" {
		_, err := os.Stdout.Write(doc)
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	_, err = atomicfile.WriteFile(*out, doc, 0o644)
	return err
}
