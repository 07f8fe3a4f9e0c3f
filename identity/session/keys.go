package session

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the size of a session key.
const KeySize = chacha20poly1305.KeySize

// maxKeys bounds the keys of a key file.
const maxKeys = 16

// ErrNoKeys is returned for a key file with no key in it.
var ErrNoKeys = errors.New("no session key")

// ParseKeys reads a key file: one base64 (standard or URL alphabet,
// padded or not) 32-byte key per line; blank lines and lines starting
// with # are ignored. The first key encrypts.
func ParseKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, err := decodeKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(keys) == maxKeys {
			return nil, fmt.Errorf("line %d: more than %d keys", n, maxKeys)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	return keys, nil
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	k, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("key is not base64")
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(k), KeySize)
	}
	return k, nil
}

// LoadKeyFile reads the key file at path. When create is set and the file
// does not exist, it is created (mode 0600) with one new random key.
func LoadKeyFile(path string, create bool) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		k := make([]byte, KeySize)
		rand.Read(k)
		data = []byte("# portcullis session keys: the first encrypts, all decrypt\n" + base64.StdEncoding.EncodeToString(k) + "\n")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("creating session key file: %w", err)
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return nil, fmt.Errorf("writing session key file: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("writing session key file: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("reading session key file: %w", err)
	}
	keys, err := ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("session key file %s: %w", path, err)
	}
	return keys, nil
}

// keyID names a key in a sealed value: the first 4 bytes of its SHA-256.
func keyID(k []byte) [4]byte {
	h := sha256.Sum256(k)
	return [4]byte{h[0], h[1], h[2], h[3]}
}
