// Command wabridge bridges WhatsApp Business Calling to SIP PBXs. This package holds flags and
// wiring only; the bridge itself lives in package bridge.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/config"
)

// version and commit are set by release builds:
//
//	go build -ldflags "-X main.version=v0.1.0 -X main.commit=$(git rev-parse --short HEAD)" ./cmd/wabridge
//
// They are variables only because -ldflags -X can set nothing else; nothing assigns them at run
// time. When unset, the module version and VCS revision Go embeds are used instead.
var (
	version string
	commit  string
)

// Exit codes. 2 for usage errors follows the flag package (and most Unix tools), so scripts can
// tell "you called it wrong" from "it failed".
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// defaultConfigPath is where packages and the systemd unit put the config.
const defaultConfigPath = "/etc/wabridge/wabridge.yaml"

func main() {
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, serve: serve, sipLogging: setSIPLogging}
	os.Exit(c.run(context.Background(), os.Args[1:]))
}

// serveFunc runs the bridge with a loaded config until ctx is cancelled.
type serveFunc func(ctx context.Context, cfg *config.Config, reload func() (*config.Config, error), log *logrus.Logger) error

// cli is the command-line program with its outputs and the bridge entry point injected, so tests
// drive it in-process.
type cli struct {
	stdout, stderr io.Writer
	serve          serveFunc
	// sipLogging points sipgo's process-wide logger (and SIP trace) at our logger. sipgo keeps
	// them in package globals that its background goroutines read, so only the real process
	// sets them; tests that run several commands in one process leave it nil.
	sipLogging func(log *logrus.Entry, trace bool)
}

// command is one subcommand. Its run function receives a fresh FlagSet named after it, on which
// it defines its flags before calling parseFlags.
type command struct {
	name    string
	args    string // synopsis after the name, for usage
	summary string
	run     func(ctx context.Context, fs *flag.FlagSet, args []string) int
}

func (c *cli) commands() []command {
	return []command{
		{"run", "[--config FILE]", "run the bridge (the default command)", c.cmdRun},
		{"check-config", "[--config FILE]", "validate a config file, list every problem, and exit", c.cmdCheckConfig},
		{"version", "", "print the version, commit and Go version", c.cmdVersion},
		{"settings", "get|set [--number +E164]", "read or change a number's calling settings through its provider's API", c.cmdSettings},
		{"healthcheck", "[--url URL]", "exit 0 when the health endpoint answers 200 (for container HEALTHCHECKs)", c.cmdHealthcheck},
		{"demo", "[--json] [-v]", "run wabridge between a simulated WhatsApp and a simulated PBX, place two calls and report", c.cmdDemo},
		{"selftest", "--config FILE --to EXT", "test your PBX trunk through wabridge with a simulated WhatsApp side", c.cmdSelftest},
	}
}

// run dispatches args (without the program name) and returns the exit code.
func (c *cli) run(ctx context.Context, args []string) int {
	cmds := c.commands()
	find := func(name string) (command, bool) {
		i := slices.IndexFunc(cmds, func(cmd command) bool { return cmd.name == name })
		if i < 0 {
			return command{}, false
		}
		return cmds[i], true
	}

	name := "run" // the default, so `wabridge --config FILE` works as a service's ExecStart
	switch {
	case len(args) == 0:
	case isHelpFlag(args[0]) || args[0] == "help":
		if len(args) > 1 && args[0] == "help" {
			if cmd, ok := find(args[1]); ok {
				return c.runCommand(ctx, cmd, []string{"-h"})
			}
			fmt.Fprintf(c.stderr, "wabridge: unknown command %q\n\n", args[1])
			c.usage(c.stderr, cmds)
			return exitUsage
		}
		c.usage(c.stdout, cmds)
		return exitOK
	case strings.HasPrefix(args[0], "-"):
	default:
		name, args = args[0], args[1:]
	}
	cmd, ok := find(name)
	if !ok {
		fmt.Fprintf(c.stderr, "wabridge: unknown command %q\n\n", name)
		c.usage(c.stderr, cmds)
		return exitUsage
	}
	return c.runCommand(ctx, cmd, args)
}

func (c *cli) runCommand(ctx context.Context, cmd command, args []string) int {
	fs := flag.NewFlagSet("wabridge "+cmd.name, flag.ContinueOnError)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: wabridge %s %s\n\n%s.\n", cmd.name, cmd.args, upperFirst(cmd.summary))
		if hasFlags(fs) {
			fmt.Fprintln(out, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return cmd.run(ctx, fs, args)
}

// parseFlags parses args into fs. When the command should stop (help requested, bad flags,
// stray arguments) it returns done and the exit code.
func (c *cli) parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	// Requested help goes to stdout so it can be paged; usage after a mistake goes to stderr.
	if slices.ContainsFunc(args, isHelpFlag) {
		fs.SetOutput(c.stdout)
	} else {
		fs.SetOutput(c.stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitUsage, true // the flag package has printed the error and usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.SetOutput(c.stderr)
		fs.Usage()
		return exitUsage, true
	}
	return 0, false
}

func (c *cli) usage(w io.Writer, cmds []command) {
	fmt.Fprint(w, `wabridge bridges WhatsApp Business Calling (Meta's SIP edge or a provider's call API, SRTP or ICE + DTLS-SRTP) to a SIP PBX.

Usage:
  wabridge [command] [flags]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, cmd := range cmds {
		fmt.Fprintf(tw, "  %s\t%s\n", cmd.name, cmd.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, `
Run 'wabridge help <command>' or 'wabridge <command> -h' for a command's flags.

The config is YAML (see examples/wabridge.yaml; default path %s).
Environment variables %s<SECTION>__<KEY> override its keys, e.g.
  %sPBX__ADDRESS=10.0.0.5:5060  %sLOG__LEVEL=debug
`, defaultConfigPath, config.EnvPrefix, config.EnvPrefix, config.EnvPrefix)
}

func (c *cli) cmdVersion(_ context.Context, fs *flag.FlagSet, args []string) int {
	if code, done := c.parseFlags(fs, args); done {
		return code
	}
	v, rev := buildVersion()
	fmt.Fprintf(c.stdout, "wabridge %s (commit %s, %s %s/%s)\n", v, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// buildVersion prefers the -ldflags values and falls back to what the Go toolchain embedded
// (module version for `go install ...@v1.2.3`, VCS revision for builds from a checkout).
func buildVersion() (ver, rev string) {
	ver, rev = version, commit
	if info, ok := debug.ReadBuildInfo(); ok {
		if ver == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			ver = info.Main.Version
		}
		var modified bool
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && commit == "" && rev != "" {
			rev += "-dirty"
		}
	}
	if ver == "" {
		ver = "dev"
	}
	if rev == "" {
		rev = "unknown"
	}
	return ver, rev
}

func (c *cli) notImplemented(_ context.Context, fs *flag.FlagSet, args []string) int {
	if code, done := c.parseFlags(fs, args); done {
		return code
	}
	fmt.Fprintf(c.stderr, "%s: not implemented yet\n", fs.Name())
	return exitUsage
}

func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "--h"
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
