package feeds

import (
	"crypto/subtle"
	"fmt"
	"strings"

	"portcullis/internal/conf"
)

// readAuthSecrets reads a feed's authorization files. Surrounding white
// space is trimmed; an empty file is an error.
func readAuthSecrets(files []conf.Path) ([][]byte, error) {
	var out [][]byte
	for _, f := range files {
		s, err := conf.ReadSecretFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f, err)
		}
		b := []byte(strings.TrimSpace(string(s.Bytes())))
		if len(b) == 0 {
			return nil, fmt.Errorf("%s is empty", f)
		}
		out = append(out, b)
	}
	return out, nil
}

// matchSecret reports whether got equals one of secrets, in constant time
// for each comparison (the lengths of the secrets may leak, not their
// contents).
func matchSecret(secrets [][]byte, got string) bool {
	ok := 0
	for _, s := range secrets {
		ok |= subtle.ConstantTimeCompare(s, []byte(got))
	}
	return ok == 1 && len(got) > 0
}

// bearer returns the token of an "Authorization: Bearer <token>" value.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
