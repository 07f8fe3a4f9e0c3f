package deps

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "portcullis"

// allowed lists, for each package of the module, the packages of the
// module it may import, and why the layering is so. Imports point to
// the leaves: policy never knows the gateway, the login flows never know
// the gateway, the model never knows its feeds.
var allowed = map[string]struct {
	imports []string
	why     string
}{
	"internal/conf":  {nil, "a leaf: configuration decoding for every package"},
	"internal/jsonx": {nil, "a leaf: JSON string encoding"},
	"internal/deny":  {[]string{"internal/jsonx"}, "renders refusals; knows nothing of policy or requests' identity"},
	"internal/deps":  {nil, "this test"},

	"certs":       {[]string{"internal/conf"}, "X.509 and revocation, nothing of requests or policy"},
	"certs/devca": {[]string{"certs", "internal/conf"}, "a development CA built on certs"},

	"posture":       {[]string{"internal/conf"}, "the model and the store, nothing of HTTP or feeds"},
	"posture/feeds": {[]string{"internal/conf", "posture"}, "feeds write the store"},
	"posture/redis": {[]string{"internal/conf", "posture"}, "the shared store's backend; knows nothing of feeds or requests"},

	"enforcement": {[]string{"certs", "internal/conf", "posture"}, "Decide reads value types; never the gateway, feeds or login flows"},

	"identity": {[]string{"enforcement", "identity/internal/flow", "identity/oidc", "identity/saml", "identity/session", "internal/conf", "posture"},
		"builds every provider behind one Authenticator; never the gateway"},
	"identity/internal/flow":          {[]string{"enforcement", "identity/session", "internal/deny"}, "return URLs, handoff and logout shared by OIDC and SAML"},
	"identity/internal/flow/flowtest": {nil, "hostile return URLs for the flows' tests"},
	"identity/session":                {[]string{"enforcement", "internal/conf"}, "sealed session cookies"},
	"identity/oidc":                   {[]string{"enforcement", "identity/internal/flow", "identity/session", "internal/conf", "internal/deny", "posture"}, "login flows produce enforcement.Subject; never the gateway"},
	"identity/saml":                   {[]string{"enforcement", "identity/internal/flow", "identity/session", "internal/conf", "internal/deny", "posture"}, "login flows produce enforcement.Subject; never the gateway"},

	"gateway/assertion": {nil, "signs what the gateway established; a leaf"},
	"gateway/audit":     {[]string{"internal/conf", "internal/jsonx"}, "writes decision records; a leaf"},
	"gateway/console": {[]string{"enforcement", "gateway/audit", "internal/conf", "posture", "posture/feeds"},
		"the admin console reads the gateway through interfaces it declares; never the gateway itself"},
	"gateway/tunnel": {[]string{"enforcement", "internal/conf"},
		"the tunnel endpoint's own parts and the connect client; the gateway routes, gathers and decides for it"},
	"gateway": {[]string{
		"certs", "certs/devca", "enforcement", "gateway/assertion", "gateway/audit", "gateway/console", "gateway/tunnel",
		"identity", "identity/oidc", "identity/saml", "identity/session",
		"internal/conf", "internal/deny", "posture", "posture/feeds", "posture/redis",
	}, "composes every layer below it"},

	"cmd/portcullis": {[]string{
		"certs", "certs/devca", "enforcement", "gateway", "gateway/tunnel", "internal/conf", "posture", "posture/feeds", "posture/redis",
	}, "the CLI over the gateway and its parts"},
	"test":                {nil, "end-to-end tests drive the built binary, not its packages"},
	"test/bench/openload": {nil, "a load generator: it speaks HTTP, and knows nothing of the gateway"},
	"test/bench/charts":   {nil, "draws the benchmark report's charts from result files"},
}

// stdForbidden lists standard packages a module package must not import.
var stdForbidden = map[string]map[string]string{
	"enforcement": {
		"net":      "Decide does no I/O",
		"net/http": "the policy engine must not know HTTP",
		"os":       "Decide does no I/O",
		"os/exec":  "Decide does no I/O",
		"io/fs":    "Decide does no I/O",
	},
}

// TestImportGraph checks every package's non-test imports against the
// table, and that the table names every package there is.
func TestImportGraph(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]map[string]bool{} // package => imports
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch {
			case rel == ".":
				return nil
			case d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || rel == "tools" || rel == "bin" || rel == "data":
				return filepath.SkipDir // other modules, fixtures, build output
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(rel))
		if imports[pkg] == nil {
			imports[pkg] = map[string]bool{}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			imports[pkg][p] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imports) < 10 {
		t.Fatalf("found only %d packages under %s", len(imports), root)
	}
	for pkg, imps := range imports {
		rule, ok := allowed[pkg]
		if !ok {
			t.Errorf("package %s is not in the import table: add it with the module packages it may import", pkg)
			continue
		}
		for imp := range imps {
			if why, bad := stdForbidden[pkg][imp]; bad {
				t.Errorf("%s imports %s: %s", pkg, imp, why)
			}
			local, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if !slices.Contains(rule.imports, local) {
				t.Errorf("%s imports %s, which the table does not allow (%s)", pkg, local, rule.why)
			}
		}
	}
}
