package enforcement

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDeps keeps Decide pure: the package itself imports nothing that does
// network or file I/O, and nothing from the layers above it.
func TestDeps(t *testing.T) {
	forbidden := map[string]string{ // import => why
		"net":                      "Decide does no I/O",
		"net/http":                 "the root package must not know HTTP",
		"os":                       "Decide does no I/O",
		"os/exec":                  "Decide does no I/O",
		"io/fs":                    "Decide does no I/O",
		"portcullis/gateway":       "enforcement must not depend on the gateway",
		"portcullis/posture/feeds": "feeds write the store; Decide only reads it",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if why, bad := forbidden[path]; bad || strings.HasPrefix(path, "portcullis/gateway/") {
				t.Errorf("%s imports %s: %s", name, path, why)
			}
		}
	}
}
