package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/wabridge/wabridge/config"
)

// cmdCheckConfig validates a config the way run would load it (same environment overrides,
// same file checks) and lists every problem.
func (c *cli) cmdCheckConfig(_ context.Context, fs *flag.FlagSet, args []string) int {
	path := fs.String("config", defaultConfigPath, "check the config in `FILE` (YAML)")
	if code, done := c.parseFlags(fs, args); done {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		c.printConfigError(*path, err)
		return exitFailure
	}
	noun := "numbers"
	if len(cfg.Numbers) == 1 {
		noun = "number"
	}
	fmt.Fprintf(c.stdout, "config OK: %d %s\n", len(cfg.Numbers), noun)
	return exitOK
}

// printConfigError lists config.Load's problems one per line, so an operator fixes them all in
// one pass.
func (c *cli) printConfigError(path string, err error) {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		fmt.Fprintf(c.stderr, "wabridge: %s: %v\n", path, err)
		return
	}
	errs := joined.Unwrap()
	noun := "problems"
	if len(errs) == 1 {
		noun = "problem"
	}
	fmt.Fprintf(c.stderr, "wabridge: %s: %d %s:\n", path, len(errs), noun)
	for _, e := range errs {
		fmt.Fprintf(c.stderr, "  %v\n", e)
	}
}
