package assertion

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzLoadKey(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Rotate(); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{KeyFile, PreviousKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nPublished-Until: x\n\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "k.pem")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if k, err := loadOrCreateKey(path); err == nil && k == nil {
			t.Error("nil key without error")
		}
		if k, err := loadRetiredKey(path); err == nil && (k == nil || k.kid == "") {
			t.Error("retired key without kid")
		}
	})
}
