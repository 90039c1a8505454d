package opstest

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// CI has no Docker engine, so the Dockerfile is parsed and checked for what issue 5 requires
// instead of built. Cheap, but it catches a dropped instruction or a renamed flag.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, ...
	args string
}

func parseDockerfile(t testing.TB, text string) []instruction {
	t.Helper()
	var (
		out     []instruction
		pending strings.Builder
		start   int
	)
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if pending.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if pending.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // comment lines inside a continuation are dropped, as docker does
		}
		if pending.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(line, `\`) {
			pending.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		pending.WriteString(line)
		cmd, args, _ := strings.Cut(pending.String(), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		pending.Reset()
	}
	require.Zero(t, pending.Len(), "Dockerfile ends inside a continuation line")
	return out
}

// stage is one FROM ... section.
type stage struct {
	from  string // image, build args expanded
	name  string // AS name
	instr []instruction
}

func dockerStages(t testing.TB, instrs []instruction) []stage {
	t.Helper()
	args := map[string]string{} // ARGs declared before the first FROM, with defaults
	var stages []stage
	for _, in := range instrs {
		switch {
		case in.cmd == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			require.NotEmpty(t, f, "line %d: FROM without an image", in.line)
			image := os.Expand(f[0], func(k string) string { return args[k] })
			s := stage{from: image}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
		default:
			require.NotEmpty(t, stages, "line %d: %s before the first FROM", in.line, in.cmd)
			stages[len(stages)-1].instr = append(stages[len(stages)-1].instr, in)
		}
	}
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instr {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm decodes a JSON-array (exec form) argument such as CMD ["a", "b"].
func execForm(t testing.TB, in instruction, args string) []string {
	t.Helper()
	var v []string
	require.NoError(t, json.Unmarshal([]byte(args), &v), "line %d: %s must use the exec form [\"...\"]", in.line, in.cmd)
	return v
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages := dockerStages(t, parseDockerfile(t, readRepoFile(t, "Dockerfile")))
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage: a Go builder and a minimal runtime image")
	builder, final := stages[0], stages[len(stages)-1]

	// The builder's Go is the one go.mod asks for.
	goMod := readRepoFile(t, "go.mod")
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(goMod)
	require.NotNil(t, m, "no go directive in go.mod")
	assert.Equal(t, "golang:"+m[1]+"-bookworm", builder.from, "builder image")
	assert.NotEmpty(t, builder.name, "the builder stage needs a name for COPY --from")
	assert.Regexp(t, `^(gcr\.io/distroless/static(-debian\d+)?(:[a-z0-9.-]+)?|debian:bookworm-slim)$`, final.from, "runtime image")

	// A static, reproducible build that stamps the version variables cmd/wabridge declares.
	var build string
	for _, in := range builder.all("RUN") {
		if strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	require.NotEmpty(t, build, "no RUN go build in the builder stage")
	assert.Contains(t, build, "CGO_ENABLED=0")
	assert.Contains(t, build, "-trimpath")
	assert.Contains(t, build, "./cmd/wabridge")
	vars := mainStringVars(t)
	for _, x := range regexp.MustCompile(`-X\s+main\.(\w+)=`).FindAllStringSubmatch(build, -1) {
		assert.Contains(t, vars, x[1], "-X main.%s sets no package-level string variable in cmd/wabridge", x[1])
	}
	assert.Regexp(t, `-X\s+main\.version=`, build)
	assert.Regexp(t, `-X\s+main\.commit=`, build)

	// The binary lands where ENTRYPOINT and HEALTHCHECK run it.
	copies := final.all("COPY")
	require.Len(t, copies, 1, "the runtime stage copies exactly the binary")
	cf := strings.Fields(copies[0].args)
	require.Len(t, cf, 3, "COPY --from=<builder> <src> <dst>")
	assert.Equal(t, "--from="+builder.name, cf[0])
	bin := cf[2]

	users := final.all("USER")
	require.NotEmpty(t, users, "the runtime stage must set USER")
	user, _, _ := strings.Cut(users[len(users)-1].args, ":")
	assert.NotContains(t, []string{"root", "0"}, user, "the container must not run as root")

	// Ports: SIP from the PBX (UDP, TCP), SIP/TLS from Meta, HTTP, and the RTP range of the
	// example config.
	var exposed []string
	for _, in := range final.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.args)...)
	}
	lo, hi := exampleRTPRange(t)
	for _, p := range []string{"5060/udp", "5060/tcp", "5061/tcp", "8080/tcp", fmt.Sprintf("%d-%d/udp", lo, hi)} {
		assert.Contains(t, exposed, p, "EXPOSE")
	}

	vols := final.all("VOLUME")
	require.Len(t, vols, 1)
	assert.Equal(t, []string{"/etc/wabridge"}, execForm(t, vols[0], vols[0].args))

	hcs := final.all("HEALTHCHECK")
	require.Len(t, hcs, 1, "HEALTHCHECK")
	_, hcCmd, ok := strings.Cut(hcs[0].args, "CMD ")
	require.True(t, ok, "HEALTHCHECK needs a CMD")
	hc := execForm(t, hcs[0], strings.TrimSpace(hcCmd))
	require.GreaterOrEqual(t, len(hc), 4)
	assert.Equal(t, bin, hc[0], "HEALTHCHECK runs the copied binary (distroless has no curl)")
	assert.Equal(t, "healthcheck", hc[1])
	u, err := url.Parse(hc[len(hc)-1])
	require.NoError(t, err)
	assert.Equal(t, "/healthz", u.Path)
	assert.Contains(t, exposed, u.Port()+"/tcp", "the health URL's port must be the exposed HTTP port")

	eps := final.all("ENTRYPOINT")
	require.Len(t, eps, 1)
	assert.Equal(t, []string{bin}, execForm(t, eps[0], eps[0].args))
	cmds := final.all("CMD")
	require.Len(t, cmds, 1)
	cmd := execForm(t, cmds[0], cmds[0].args)
	assert.Equal(t, []string{"run", "--config", "/etc/wabridge/wabridge.yaml"}, cmd)

	t.Run("command lines", func(t *testing.T) {
		t.Parallel()
		// The binary accepts what the image runs (with -h, so nothing starts).
		exe := wabridgeBinary(t)
		out, code := runTool(t, time.Minute, exe, append(cmd, "-h")...)
		assert.Equal(t, 0, code, "wabridge %s -h:\n%s", strings.Join(cmd, " "), out)

		out, code = runTool(t, time.Minute, exe, append(hc[1:], "-h")...)
		assert.Equal(t, 0, code, "wabridge %s -h:\n%s", strings.Join(hc[1:], " "), out)

		// The HEALTHCHECK's command against a health endpoint that is up, then one that is not:
		// Docker reads exit 0 as healthy and 1 as unhealthy.
		status := http.StatusOK
		var mu sync.Mutex
		health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if r.URL.Path != u.Path {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
		}))
		defer health.Close()
		args := slices.Clone(hc[1:])
		args[len(args)-1] = health.URL + u.Path
		out, code = runTool(t, time.Minute, exe, args...)
		assert.Equal(t, 0, code, "healthcheck against a 200 endpoint:\n%s", out)
		mu.Lock()
		status = http.StatusServiceUnavailable
		mu.Unlock()
		out, code = runTool(t, time.Minute, exe, args...)
		assert.Equal(t, 1, code, "healthcheck against a 503 endpoint:\n%s", out)
	})
}

// mainStringVars lists the package-level string variables of cmd/wabridge (what -ldflags -X
// can set).
func mainStringVars(t testing.TB) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(repoPath(t, "cmd/wabridge/*.go"))
	require.NoError(t, err)
	var vars []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, d := range file.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "string" {
					continue
				}
				for _, n := range vs.Names {
					vars = append(vars, n.Name)
				}
			}
		}
	}
	return vars
}

// TestDockerignore: the build context leaves out the repository's history, local binaries and
// anything secret, and keeps every file `go build` needs.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	var patterns []*regexp.Regexp
	for _, line := range strings.Split(readRepoFile(t, ".dockerignore"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		require.False(t, strings.HasPrefix(line, "!"), "exceptions are not expected: %q", line)
		patterns = append(patterns, dockerignoreRegexp(strings.TrimPrefix(line, "/")))
	}
	ignored := func(rel string) bool {
		// A pattern excludes a path when it matches the path or any directory above it.
		for p := rel; p != "."; p = filepath.ToSlash(filepath.Dir(p)) {
			for _, re := range patterns {
				if re.MatchString(p) {
					return true
				}
			}
		}
		return false
	}
	for _, p := range []string{".git", "wabridge", ".ci/run", "etc/wabridge.env", "tls/privkey.pem"} {
		assert.True(t, ignored(p), "%s must not be sent to the Docker daemon", p)
	}

	root := repoRoot(t)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() && rel == ".git" {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") || rel == "go.mod" || rel == "go.sum") {
			assert.False(t, ignored(rel), "%s is needed by go build but .dockerignore excludes it", rel)
		}
		return nil
	})
	require.NoError(t, err)
}

// dockerignoreRegexp turns a .dockerignore pattern (Go filepath.Match syntax plus "**") into an
// anchored regular expression over slash-separated paths.
func dockerignoreRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}
