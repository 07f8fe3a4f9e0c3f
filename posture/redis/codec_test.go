package redis

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"portcullis/posture"
)

func TestPayloadRoundTrip(t *testing.T) {
	ops := []posture.Op{
		{Bucket: posture.BucketDevices, Key: "\x06ivanti\x01x\x03uem", Value: []byte(`{"a":1}`)},
		{Bucket: posture.BucketUsers, Key: "ann@example.com"},
		{Bucket: posture.BucketCursors, Key: "okta", Value: []byte{}},
	}
	var b []byte
	for i := range ops {
		b = appendOp(b, &ops[i])
	}
	got, err := parsePayload(b, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := []posture.Record{
		{Bucket: posture.BucketDevices, Key: ops[0].Key, Value: ops[0].Value, Rev: 7},
		{Bucket: posture.BucketUsers, Key: ops[1].Key, Rev: 7},
		{Bucket: posture.BucketCursors, Key: "okta", Value: []byte{}, Rev: 7},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
}

func TestSplitStored(t *testing.T) {
	tests := []struct {
		in     string
		rev    uint64
		value  string
		wantOK bool
	}{
		{"12 {}", 12, "{}", true},
		{"1 ", 1, "", true},
		{"0 {}", 0, "", false},
		{"{}", 0, "", false},
		{"-3 {}", 0, "", false},
		{"99999999999999999999999 x", 0, "", false},
	}
	for _, tt := range tests {
		rev, v, ok := splitStored(tt.in)
		if ok != tt.wantOK || rev != tt.rev || string(v) != tt.value {
			t.Errorf("splitStored(%q) = %d, %q, %v; want %d, %q, %v", tt.in, rev, v, ok, tt.rev, tt.value, tt.wantOK)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	op := posture.Op{Bucket: posture.BucketRevocations, Key: "\x01u\x03ann", Value: []byte(`{"kind":"user"}`)}
	f.Add(appendOp(nil, &op))
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := parsePayload(b, 1)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes.
		var again []byte
		for _, r := range recs {
			if r.Bucket < posture.BucketDevices || r.Bucket > posture.BucketCursors {
				t.Fatalf("accepted bucket %d", r.Bucket)
			}
			again = appendOp(again, &posture.Op{Bucket: r.Bucket, Key: r.Key, Value: r.Value})
		}
		if string(again) != string(b) {
			t.Fatalf("re-encoding differs: %x vs %x", again, b)
		}
	})
}

func FuzzParseEntryID(f *testing.F) {
	f.Add("0-1")
	f.Add("1700000000000-0")
	f.Fuzz(func(t *testing.T, id string) {
		if rev, ok := parseEntryID(id); ok && (rev == 0 || id[:2] != "0-") {
			t.Fatalf("accepted %q as %d", id, rev)
		}
	})
}
