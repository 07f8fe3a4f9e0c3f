package posture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// A dump is a store's records as JSON lines, the format of `portcullis
// store export` and `import`, the same for the embedded and the shared
// store. The first line names the format:
//
//	{"format":"portcullis-store","version":1}
//
// then one line per record:
//
//	{"bucket":"devices","key":["corp","dev-1","uem"],"value":{…}}
//	{"bucket":"users","key":["alice@example.com"],"value":{…}}
//	{"bucket":"revocations","key":["u","alice@example.com"],"value":{…}}
//	{"bucket":"cursors","key":["okta"],"value":"<cursor>"}
//	{"bucket":"dedup","key":["uem","evt-1"],"expires":"2026-12-04T10:00:00Z"}
//
// key is the record's key split into its parts; value is the stored
// record (JSON, as the store keeps it), or for cursors the cursor as a
// string; dedup lines are remembered event ids with their expiry.
// Records are independent, so a dump imported twice gives the same store.

// DumpFormat and DumpVersion are the header line's values.
const (
	DumpFormat  = "portcullis-store"
	DumpVersion = 1
)

// MaxDumpLine bounds one line of a dump.
const MaxDumpLine = 1 << 20

// An Entry is one record of a dump. Value is the stored encoding (for
// cursors the cursor itself); for BucketDedup it is empty and Expires says
// when the event id is forgotten.
type Entry struct {
	Bucket  Bucket
	Key     string
	Value   []byte
	Expires time.Time
}

type dumpHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

type dumpLine struct {
	Bucket  string          `json:"bucket"`
	Key     []string        `json:"key"`
	Value   json.RawMessage `json:"value,omitempty"`
	Expires time.Time       `json:"expires,omitzero"`
}

// DumpWriter writes a dump. Call Flush at the end.
type DumpWriter struct {
	w   *bufio.Writer
	err error
}

// NewDumpWriter writes the header line to w and returns the writer.
func NewDumpWriter(w io.Writer) *DumpWriter {
	d := &DumpWriter{w: bufio.NewWriterSize(w, 64<<10)}
	d.line(dumpHeader{Format: DumpFormat, Version: DumpVersion})
	return d
}

func (d *DumpWriter) line(v any) {
	if d.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		d.err = err
		return
	}
	d.w.Write(b)
	d.err = d.w.WriteByte('\n')
}

// Write writes one entry; an entry the format cannot carry exactly (a
// key that is not valid UTF-8 once split, a value that is not JSON) is an
// error.
func (d *DumpWriter) Write(e Entry) error {
	parts, err := splitEntryKey(e.Bucket, e.Key)
	if err != nil {
		return fmt.Errorf("exporting a %s record: %w", e.Bucket, err)
	}
	l := dumpLine{Bucket: e.Bucket.String(), Key: parts}
	switch e.Bucket {
	case BucketDedup:
		l.Expires = e.Expires.UTC()
	case BucketCursors:
		if !utf8.Valid(e.Value) {
			return fmt.Errorf("exporting cursor %q: value is not UTF-8", e.Key)
		}
		l.Value, _ = json.Marshal(string(e.Value))
	default:
		if !json.Valid(e.Value) {
			return fmt.Errorf("exporting a %s record: value is not JSON", e.Bucket)
		}
		l.Value = e.Value
	}
	d.line(l)
	return d.err
}

// Flush writes what is buffered.
func (d *DumpWriter) Flush() error {
	if d.err != nil {
		return d.err
	}
	return d.w.Flush()
}

// DumpReader reads a dump, checking every line.
type DumpReader struct {
	sc   *bufio.Scanner
	line int
}

// NewDumpReader reads and checks the header line of r.
func NewDumpReader(r io.Reader) (*DumpReader, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxDumpLine)
	d := &DumpReader{sc: sc}
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("dump line 1: %w", err)
		}
		return nil, errors.New("dump is empty: want a header line")
	}
	d.line = 1
	var h dumpHeader
	if err := strictUnmarshal(sc.Bytes(), &h); err != nil || h.Format != DumpFormat {
		return nil, fmt.Errorf("dump line 1: not a %s header", DumpFormat)
	}
	if h.Version != DumpVersion {
		return nil, fmt.Errorf("dump line 1: version %d, want %d", h.Version, DumpVersion)
	}
	return d, nil
}

// Next returns the next entry, or io.EOF after the last. An error names
// the line.
func (d *DumpReader) Next() (Entry, error) {
	for d.sc.Scan() {
		d.line++
		if len(bytes.TrimSpace(d.sc.Bytes())) == 0 {
			continue
		}
		e, err := ParseDumpLine(d.sc.Bytes())
		if err != nil {
			return Entry{}, fmt.Errorf("dump line %d: %w", d.line, err)
		}
		return e, nil
	}
	if err := d.sc.Err(); err != nil {
		return Entry{}, fmt.Errorf("dump line %d: %w", d.line+1, err)
	}
	return Entry{}, io.EOF
}

// ParseDumpLine parses and checks one record line: the bucket is known,
// the key has its bucket's shape, and the value decodes as that bucket's
// record, so nothing is imported that the store could not load.
func ParseDumpLine(b []byte) (Entry, error) {
	var l dumpLine
	if err := strictUnmarshal(b, &l); err != nil {
		return Entry{}, err
	}
	var e Entry
	for i, name := range bucketNames {
		if i > 0 && name == l.Bucket {
			e.Bucket = Bucket(i)
		}
	}
	if e.Bucket == 0 {
		return Entry{}, fmt.Errorf("unknown bucket %q", l.Bucket)
	}
	key, err := joinEntryKey(e.Bucket, l.Key)
	if err != nil {
		return Entry{}, err
	}
	e.Key = key
	switch e.Bucket {
	case BucketDedup:
		if l.Expires.IsZero() || len(l.Value) != 0 {
			return Entry{}, errors.New("a dedup record has an expiry and no value")
		}
		e.Expires = l.Expires
		return e, nil
	case BucketCursors:
		var s string
		if err := json.Unmarshal(l.Value, &s); err != nil {
			return Entry{}, errors.New("a cursor's value must be a string")
		}
		e.Value = []byte(s)
		return e, nil
	}
	if len(l.Value) == 0 || !l.Expires.IsZero() {
		return Entry{}, fmt.Errorf("a %s record has a value and no expiry", e.Bucket)
	}
	e.Value = bytes.Clone(l.Value)
	switch e.Bucket {
	case BucketDevices:
		_, err = decodePosture(l.Key[2], e.Value)
	case BucketUsers:
		_, err = decodeRisk(key, e.Value)
	case BucketRevocations:
		var r Revocation
		if r, err = decodeRevocation(e.Value); err == nil && string(revocationKey(&r)) != key {
			err = errors.New("the key names another subject than the revocation")
		}
	}
	if err != nil {
		return Entry{}, fmt.Errorf("%s record: %w", e.Bucket, err)
	}
	return e, nil
}

// strictUnmarshal decodes one JSON object, refusing unknown fields and
// anything after it.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the object")
	}
	return nil
}

// revocationKey is the stored key of r.
func revocationKey(r *Revocation) []byte {
	switch r.Kind {
	case RevokeSession:
		return revSessionKey(r.Session)
	case RevokeUser:
		return revUserKey(r.User)
	default:
		return revDeviceKey(r.Device)
	}
}

// splitEntryKey splits a stored key into the parts a dump line shows.
func splitEntryKey(b Bucket, key string) ([]string, error) {
	var parts []string
	switch b {
	case BucketUsers, BucketCursors:
		parts = []string{key}
	default:
		rest := []byte(key)
		for len(rest) > 0 {
			l, n := binary.Uvarint(rest)
			if n <= 0 || uint64(len(rest)-n) < l {
				return nil, errBadKey
			}
			parts = append(parts, string(rest[n:n+int(l)]))
			rest = rest[n+int(l):]
		}
	}
	if err := checkKeyShape(b, parts); err != nil {
		return nil, err
	}
	for _, p := range parts {
		if !utf8.ValidString(p) {
			return nil, errors.New("key is not UTF-8")
		}
	}
	return parts, nil
}

// joinEntryKey is splitEntryKey's inverse.
func joinEntryKey(b Bucket, parts []string) (string, error) {
	if err := checkKeyShape(b, parts); err != nil {
		return "", err
	}
	if b == BucketUsers || b == BucketCursors {
		return parts[0], nil
	}
	return string(joinKeyParts(parts...)), nil
}

// checkKeyShape checks the number and kind of a key's parts.
func checkKeyShape(b Bucket, parts []string) error {
	ok := false
	switch b {
	case BucketDevices:
		ok = len(parts) == 3 && parts[0] != "" && parts[1] != "" && parts[2] != ""
	case BucketUsers, BucketCursors:
		ok = len(parts) == 1 && parts[0] != ""
	case BucketRevocations:
		ok = len(parts) == 2 && (parts[0] == "s" || parts[0] == "u") || len(parts) == 3 && parts[0] == "d"
	case BucketDedup:
		ok = len(parts) == 2 && parts[0] != "" || len(parts) == 4 && parts[0] == "" && parts[1] == "guard"
	}
	if !ok {
		return fmt.Errorf("malformed %s key %q", b, parts)
	}
	return nil
}
