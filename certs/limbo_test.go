package certs

import (
	"bufio"
	"compress/gzip"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"portcullis/internal/conf"
)

// limboDir is where the x509-limbo vectors live: ../shared beside the
// repository checkout (TESTING.md).
const limboDir = "../../shared/testdata/x509-limbo"

// A limboCase is one x509-limbo testcase (schema version 1), the fields
// this test uses.
type limboCase struct {
	ID                     string   `json:"id"`
	Features               []string `json:"features"`
	ValidationKind         string   `json:"validation_kind"`
	TrustedCerts           []string `json:"trusted_certs"`
	UntrustedIntermediates []string `json:"untrusted_intermediates"`
	PeerCertificate        string   `json:"peer_certificate"`
	ValidationTime         *string  `json:"validation_time"`
	SignatureAlgorithms    []string `json:"signature_algorithms"`
	KeyUsage               []string `json:"key_usage"`
	ExtendedKeyUsage       []string `json:"extended_key_usage"`
	ExpectedResult         string   `json:"expected_result"`
	ExpectedPeerName       *struct {
		Kind, Value string
	} `json:"expected_peer_name"`
	ExpectedPeerNames []struct {
		Kind, Value string
	} `json:"expected_peer_names"`
	MaxChainDepth *int     `json:"max_chain_depth"`
	CRLs          []string `json:"crls"`
}

const (
	limboSuccess = "SUCCESS"
	limboFailure = "FAILURE"
	limboSkipped = "SKIPPED"
)

// limboStricter are the cases where a device-certificate gateway is meant
// to do better than crypto/x509 (issue #7): CRLs, a bounded chain depth,
// and the device profile (no CA as leaf, no weak keys, no bad serials).
func limboStricter(id string) bool {
	for _, p := range []string{"crl::", "pathlen::max-chain-depth-", "pathological::intermediate-cycle-distinct-cas-max-depth"} {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

// limboDeviceProfile are the SERVER cases the device profile must reject
// although crypto/x509 accepts them.
var limboDeviceProfile = []string{
	"webpki::ca-as-leaf",
	"webpki::ee-basicconstraints-ca",
	"rfc5280::leaf-ku-keycertsign",
	"webpki::forbidden-dsa-leaf",
	"webpki::forbidden-weak-rsa-key-in-root",
	"webpki::forbidden-weak-rsa-in-leaf",
	"webpki::forbidden-rsa-not-divisible-by-8-in-root",
	"webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf",
	"rfc5280::serial::zero",
	"rfc5280::serial::too-long",
}

// TestLimbo runs every x509-limbo case through Portcullis's verification
// paths and compares the outcome with Go 1.26's baseline: CLIENT cases
// through Devices.Verify, SERVER cases through the upstream verifier
// (crypto/x509 with the name and time), plus the device verifier's CRL
// and chain-depth checks for the cases that carry CRLs or a depth limit.
// A new false accept or false reject fails the test; so does a case the
// issue expects us to improve on that still fails. Separately, every
// SERVER case is run through the device-certificate profile, which must
// reject CA leaves, weak keys and bad serials.
func TestLimbo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 9,780 cases")
	}
	cases, baseline := loadLimbo(t)
	type counts struct{ cases, pass, fail, skip, falseAccept, falseReject, basePass, baseFail, baseSkip int }
	groups := map[string]*counts{}
	var order []string
	group := func(id string) *counts {
		parts := strings.Split(id, "::")
		k := parts[0]
		if len(parts) > 2 && (k == "bettertls" || k == "rfc5280" || k == "webpki") {
			k += "::" + parts[1]
		}
		if groups[k] == nil {
			groups[k] = &counts{}
			order = append(order, k)
		}
		return groups[k]
	}
	total := &counts{}
	var regressions, devProfileMisses []string
	devProfile := map[string]string{}
	for _, tc := range cases {
		got := runLimboCase(tc)
		base, inBase := baseline[tc.ID]
		if !inBase {
			base = tc.ExpectedResult // Go agrees with the suite
		}
		for _, c := range []*counts{group(tc.ID), total} {
			c.cases++
			switch {
			case got == limboSkipped:
				c.skip++
			case got == tc.ExpectedResult:
				c.pass++
			default:
				c.fail++
				if got == limboSuccess {
					c.falseAccept++
				} else {
					c.falseReject++
				}
			}
			switch {
			case base == limboSkipped:
				c.baseSkip++
			case base == tc.ExpectedResult:
				c.basePass++
			default:
				c.baseFail++
			}
		}
		switch {
		case got == tc.ExpectedResult:
		case limboStricter(tc.ID):
			regressions = append(regressions, fmt.Sprintf("%s: got %s, want %s (a case we must pass)", tc.ID, got, tc.ExpectedResult))
		case got != base && (base == tc.ExpectedResult || base == limboSkipped):
			regressions = append(regressions, fmt.Sprintf("%s: got %s, want %s; Go's baseline is %s", tc.ID, got, tc.ExpectedResult, base))
		}
		if tc.ValidationKind == "SERVER" {
			devProfile[tc.ID] = runLimboDeviceProfile(tc)
		}
	}
	for _, id := range limboDeviceProfile {
		if got, ok := devProfile[id]; !ok || got != limboFailure {
			devProfileMisses = append(devProfileMisses, fmt.Sprintf("%s: device profile gives %q, want FAILURE", id, got))
		}
	}

	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "group\tcases\tpass\tfail\tskip\tfalse accept\tfalse reject\t|\tGo pass\tGo fail\tGo skip\t")
	slices.Sort(order)
	for _, k := range append(order, "all") {
		c := groups[k]
		if k == "all" {
			c = total
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t|\t%d\t%d\t%d\t\n", k, c.cases, c.pass, c.fail, c.skip, c.falseAccept, c.falseReject, c.basePass, c.baseFail, c.baseSkip)
	}
	w.Flush()
	var fixed, newRejects []string
	for _, tc := range cases {
		r, ok := devProfile[tc.ID]
		if !ok || r == limboSkipped {
			continue
		}
		base := runLimboCase(tc)
		switch {
		case r == limboFailure && base == limboSuccess && tc.ExpectedResult == limboFailure:
			fixed = append(fixed, tc.ID)
		case r == limboFailure && tc.ExpectedResult == limboSuccess && base == limboSuccess:
			newRejects = append(newRejects, tc.ID)
		}
	}
	t.Logf("x509-limbo, %d cases:\n%s\ndevice profile over the %d SERVER cases: rejects %d false accepts of the upstream verifier %v; rejects %d cases the suite accepts %v",
		len(cases), b.String(), len(devProfile), len(fixed), fixed, len(newRejects), newRejects)
	for _, r := range regressions {
		t.Error(r)
	}
	for _, r := range devProfileMisses {
		t.Error(r)
	}
}

// loadLimbo reads the cases and the baseline (id → Go's result for the
// cases where Go disagrees with the suite or skips). Missing files skip
// the test locally and fail it in CI.
func loadLimbo(t *testing.T) ([]limboCase, map[string]string) {
	t.Helper()
	dir, err := filepath.Abs(limboDir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "limbo.json.gz"))
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("x509-limbo vectors: %v", err)
		}
		t.Skipf("x509-limbo vectors not found: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version   int         `json:"version"`
		Testcases []limboCase `json:"testcases"`
	}
	if err := json.NewDecoder(zr).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != 1 || len(doc.Testcases) == 0 {
		t.Fatalf("limbo.json: version %d, %d cases", doc.Version, len(doc.Testcases))
	}
	bf, err := os.Open(filepath.Join(dir, "go1.26-baseline.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	baseline := map[string]string{}
	sc := bufio.NewScanner(bf)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) < 3 {
			t.Fatalf("baseline line %q", line)
		}
		baseline[fields[0]] = fields[2]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return doc.Testcases, baseline
}

// limboSkip says why a case cannot be run, or "".
func limboSkip(tc limboCase) string {
	if len(tc.SignatureAlgorithms) > 0 {
		return "signature algorithm restrictions"
	}
	for _, ku := range tc.KeyUsage {
		if ku != "digitalSignature" {
			return "key usage " + ku
		}
	}
	return ""
}

func parsePEMCerts(pems []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range pems {
		b, _ := pem.Decode([]byte(p))
		if b == nil {
			return nil, errors.New("no PEM block")
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

var limboEKUs = map[string]x509.ExtKeyUsage{
	"anyExtendedKeyUsage": x509.ExtKeyUsageAny,
	"serverAuth":          x509.ExtKeyUsageServerAuth,
	"clientAuth":          x509.ExtKeyUsageClientAuth,
	"codeSigning":         x509.ExtKeyUsageCodeSigning,
	"emailProtection":     x509.ExtKeyUsageEmailProtection,
	"timeStamping":        x509.ExtKeyUsageTimeStamping,
	"OCSPSigning":         x509.ExtKeyUsageOCSPSigning,
}

// limboInputs parses a case.
type limboInputs struct {
	leaf          *x509.Certificate
	roots, inters []*x509.Certificate
	now           time.Time
	ekus          []x509.ExtKeyUsage
}

func parseLimbo(tc limboCase) (*limboInputs, error) {
	in := &limboInputs{now: time.Now()}
	if tc.ValidationTime != nil {
		t, err := time.Parse(time.RFC3339, *tc.ValidationTime)
		if err != nil {
			return nil, err
		}
		in.now = t
	}
	leaves, err := parsePEMCerts([]string{tc.PeerCertificate})
	if err != nil {
		return nil, err
	}
	in.leaf = leaves[0]
	if in.roots, err = parsePEMCerts(tc.TrustedCerts); err != nil {
		return nil, err
	}
	if in.inters, err = parsePEMCerts(tc.UntrustedIntermediates); err != nil {
		return nil, err
	}
	for _, e := range tc.ExtendedKeyUsage {
		in.ekus = append(in.ekus, limboEKUs[e])
	}
	return in, nil
}

func runLimboCase(tc limboCase) string {
	if limboSkip(tc) != "" {
		return limboSkipped
	}
	in, err := parseLimbo(tc)
	if err != nil {
		return limboFailure
	}
	var ok bool
	if tc.ValidationKind == "CLIENT" {
		ok = limboClient(tc, in)
	} else {
		ok = limboServer(tc, in) == nil
	}
	if ok {
		return limboSuccess
	}
	return limboFailure
}

// limboServer is the upstream verifier (what crypto/tls does for the
// gateway as a client), plus, for cases that carry CRLs or a depth limit,
// the device verifier's CRL and depth checks on the chains it built.
func limboServer(tc limboCase, in *limboInputs) error {
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range in.roots {
		roots.AddCert(c)
	}
	for _, c := range in.inters {
		inters.AddCert(c)
	}
	name := ""
	if tc.ExpectedPeerName != nil {
		name = tc.ExpectedPeerName.Value
	}
	chains, err := in.leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: name, CurrentTime: in.now, KeyUsages: in.ekus})
	if err != nil {
		return err
	}
	if len(tc.CRLs) == 0 && tc.MaxChainDepth == nil {
		return nil
	}
	crls, err := limboCRLs(tc.CRLs)
	if err != nil {
		return err // an unusable CRL fails closed, as crl_files do
	}
	for _, ch := range chains {
		if err := limboChainChecks(tc, ch, crls, in.now); err == nil {
			return nil
		}
	}
	return errors.New("no chain passed the CRL and depth checks")
}

func limboCRLs(pems []string) (*crlSet, error) {
	f := &crlFile{path: "limbo"}
	for _, p := range pems {
		es, err := parseCRLs([]byte(p))
		if err != nil {
			return nil, err
		}
		f.crls = append(f.crls, es...)
	}
	return newCRLSet(1, []*crlFile{f}, nil), nil
}

// limboChainChecks applies the depth bound (limbo counts intermediates,
// the device verifier counts the leaf too) and the CRLs to a chain.
func limboChainChecks(tc limboCase, ch []*x509.Certificate, crls *crlSet, now time.Time) error {
	if tc.MaxChainDepth != nil && chainDepth(ch) > *tc.MaxChainDepth+1 {
		return errors.New("chain too deep")
	}
	for i := 0; i+1 < len(ch); i++ {
		if _, err := crls.check(ch[i], ch[i+1], now, true); err != nil {
			return err
		}
	}
	return nil
}

// limboClient runs a CLIENT case through Devices.Verify, with a CA whose
// bundle is the case's trusted certificates and an identity rule that
// takes any e-mail SAN; the expected names must all be on the leaf.
func limboClient(tc limboCase, in *limboInputs) bool {
	dir, err := os.MkdirTemp("", "limbo")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	var bundle []byte
	for _, c := range in.roots {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	path := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(path, bundle, 0o600); err != nil {
		return false
	}
	cfg := DevicesConfig{CAs: []CAConfig{{Name: "limbo", Bundle: conf.Path(path), DeviceID: IdentityRule{From: FromEmailSAN, Pattern: `(?s)^(.*)$`}}}}
	if tc.MaxChainDepth != nil {
		cfg.CAs[0].MaxChainDepth = *tc.MaxChainDepth + 1
	}
	now := in.now
	d, err := NewDevices(cfg, Options{Now: func() time.Time { return now }})
	if err != nil {
		return false // the trust anchors themselves are refused
	}
	for _, e := range in.ekus {
		if e != x509.ExtKeyUsageClientAuth {
			return false // the device verifier wants clientAuth only
		}
	}
	chain := append([]*x509.Certificate{in.leaf}, in.inters...)
	if _, err := d.Verify(chain, nil); err != nil {
		var ve *VerifyError
		if errors.As(err, &ve) && ve.Code == CodeAmbiguousIdentity {
			// Several e-mail SANs: the chain is fine, the names decide.
		} else {
			return false
		}
	}
	for _, want := range tc.ExpectedPeerNames {
		if want.Kind != "RFC822" || !slices.ContainsFunc(in.leaf.EmailAddresses, func(e string) bool { return strings.EqualFold(e, want.Value) }) {
			return false
		}
	}
	return true
}

// runLimboDeviceProfile runs a SERVER case's chain through the device
// profile: the upstream verifier's chain building, then the checks the
// device verifier adds (CA as leaf, serial, keys of the whole chain and
// of the anchors), leaving out only the clientAuth EKU.
func runLimboDeviceProfile(tc limboCase) string {
	if limboSkip(tc) != "" {
		return limboSkipped
	}
	in, err := parseLimbo(tc)
	if err != nil {
		return limboFailure
	}
	if limboServer(tc, in) != nil {
		return limboFailure
	}
	for _, r := range in.roots {
		if !r.BasicConstraintsValid || !r.IsCA || checkKey(r) != nil {
			return limboFailure // NewDevices refuses such a bundle
		}
	}
	l := in.leaf
	if l.BasicConstraintsValid && l.IsCA || l.KeyUsage&x509.KeyUsageCertSign != 0 || checkSerial(l) != nil {
		return limboFailure
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range in.roots {
		roots.AddCert(c)
	}
	for _, c := range in.inters {
		inters.AddCert(c)
	}
	chains, _ := l.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: in.now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	for _, ch := range chains {
		if !slices.ContainsFunc(ch, func(c *x509.Certificate) bool { return checkKey(c) != nil }) {
			return limboSuccess
		}
	}
	return limboFailure
}
