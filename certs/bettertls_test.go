package certs

import (
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	test_case "github.com/Netflix/bettertls/test-suites/test-case"
	test_executor "github.com/Netflix/bettertls/test-suites/test-executor"
)

// TestBetterTLS runs Netflix BetterTLS's name-constraints and
// path-building suites (generated afresh, with a new root) through the
// upstream verifier, and the path-building suite also through the device
// chain checks (chain building with a bounded depth and the key policy).
// The device verifier proper does not apply: the suites' leaves are
// serverAuth-only, so it refuses them all on the EKU.
//
// Hard expectations (PASS/FAIL) must be met; soft ones are reported.
func TestBetterTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("generates and runs about 9,600 chains")
	}
	suites, err := test_executor.BuildTestSuites()
	if err != nil {
		t.Fatal(err)
	}
	root := suites.GetRootCert()
	roots := x509.NewCertPool()
	roots.AddCert(root)
	now := time.Now()

	type verifier struct {
		name   string
		suites []string // provider names it applies to
		verify func(host string, chain []*x509.Certificate) error
	}
	upstream := func(host string, chain []*x509.Certificate) error {
		_, err := upstreamChains(host, chain, roots, now)
		return err
	}
	deviceChain := func(host string, chain []*x509.Certificate) error {
		chains, err := upstreamChains(host, chain, roots, now)
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if chainDepth(ch) > maxChainDepthLimit {
				continue
			}
			bad := false
			for _, c := range ch {
				bad = bad || checkKey(c) != nil
			}
			if !bad {
				return nil
			}
		}
		return fmt.Errorf("no chain within depth %d with acceptable keys", maxChainDepthLimit)
	}
	verifiers := []verifier{
		{"upstream", []string{"nameconstraints", "pathbuilding"}, upstream},
		{"device chain checks", []string{"pathbuilding"}, deviceChain},
	}

	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "verifier\tsuite\tcases\tpass\tfail\tsoft pass\tsoft fail\tfalse accept\tfalse reject\t")
	for _, v := range verifiers {
		for _, name := range v.suites {
			p := suites.GetProvider(name)
			if p == nil {
				t.Fatalf("no BetterTLS suite %q (have %v)", name, suites.GetProviderNames())
			}
			n, err := p.GetTestCaseCount()
			if err != nil {
				t.Fatal(err)
			}
			var pass, fail, softPass, softFail, falseAccept, falseReject int
			var examples []string
			for i := range n {
				tc, err := p.GetTestCase(i)
				if err != nil {
					t.Fatal(err)
				}
				tlsCert, err := suites.GetTestCaseCertificates(tc)
				if err != nil {
					t.Fatal(err)
				}
				// A certificate crypto/x509 cannot parse fails the
				// handshake: rejected.
				var chain []*x509.Certificate
				for _, der := range tlsCert.Certificate {
					c, err := x509.ParseCertificate(der)
					if err != nil {
						chain = nil
						break
					}
					chain = append(chain, c)
				}
				accepted := chain != nil && v.verify(tc.GetHostname(), chain) == nil
				switch exp := tc.ExpectedResult(); {
				case exp == test_case.EXPECTED_RESULT_PASS && accepted, exp == test_case.EXPECTED_RESULT_FAIL && !accepted:
					pass++
				case exp == test_case.EXPECTED_RESULT_PASS:
					fail++
					falseReject++
					examples = append(examples, fmt.Sprintf("#%d rejected", i))
				case exp == test_case.EXPECTED_RESULT_FAIL:
					fail++
					falseAccept++
					examples = append(examples, fmt.Sprintf("#%d accepted", i))
				case exp == test_case.EXPECTED_RESULT_SOFT_PASS && accepted, exp == test_case.EXPECTED_RESULT_SOFT_FAIL && !accepted:
					softPass++
				default:
					softFail++
				}
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", v.name, name, n, pass, fail, softPass, softFail, falseAccept, falseReject)
			if fail > 0 {
				if len(examples) > 10 {
					examples = examples[:10]
				}
				t.Errorf("%s on BetterTLS %s: %d hard failures, e.g. %v", v.name, name, fail, examples)
			}
		}
	}
	w.Flush()
	t.Logf("BetterTLS (github.com/Netflix/bettertls):\n%s", b.String())
}

// upstreamChains verifies a server chain the way crypto/tls does for the
// gateway's upstream connections: the peer's extra certificates are
// untrusted intermediates, the host name (or IP literal) must match.
func upstreamChains(host string, chain []*x509.Certificate, roots *x509.CertPool, now time.Time) ([][]*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host, CurrentTime: now})
}
