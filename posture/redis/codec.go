package redis

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"

	"portcullis/posture"
)

// A change stream entry's payload is the transaction's writes, each:
//
//	bucket (1 byte) | uvarint len | key | flag (0 delete, 1 put) | [uvarint len | value]
//
// The entry's id is "0-<rev>" and its field "e" the generation. Event-id
// writes are not streamed: only Redis needs them.

// appendOp appends one write to a payload.
func appendOp(b []byte, op *posture.Op) []byte {
	b = append(b, byte(op.Bucket))
	b = binary.AppendUvarint(b, uint64(len(op.Key)))
	b = append(b, op.Key...)
	if op.Value == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(op.Value)))
	return append(b, op.Value...)
}

var errBadPayload = errors.New("malformed change payload")

// maxPayloadOps bounds what one entry may claim to hold.
const maxPayloadOps = 1 << 20

// parsePayload decodes a payload into records at revision rev. It never
// panics, whatever b holds.
func parsePayload(b []byte, rev uint64) ([]posture.Record, error) {
	var out []posture.Record
	for len(b) > 0 {
		if len(out) >= maxPayloadOps {
			return nil, errBadPayload
		}
		bk := posture.Bucket(b[0])
		if bk < posture.BucketDevices || bk > posture.BucketCursors {
			return nil, errBadPayload
		}
		b = b[1:]
		key, rest, ok := cutBytes(b)
		if !ok || len(rest) == 0 {
			return nil, errBadPayload
		}
		rec := posture.Record{Bucket: bk, Key: string(key), Rev: rev}
		flag := rest[0]
		b = rest[1:]
		switch flag {
		case 0:
		case 1:
			v, rest, ok := cutBytes(b)
			if !ok {
				return nil, errBadPayload
			}
			rec.Value = append([]byte{}, v...)
			b = rest
		default:
			return nil, errBadPayload
		}
		out = append(out, rec)
	}
	return out, nil
}

func cutBytes(b []byte) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	// A length has one encoding: a longer one (a last byte of 0) is
	// refused, so a payload means exactly one thing.
	if k <= 0 || k > 1 && b[k-1] == 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// parseEntryID returns the revision of a stream entry id "0-<rev>".
func parseEntryID(id string) (uint64, bool) {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok || ms != "0" {
		return 0, false
	}
	rev, err := strconv.ParseUint(seq, 10, 64)
	return rev, err == nil && rev > 0
}

// splitStored splits a stored hash value "<rev> <value>". A value that
// does not have that shape is foreign: ok is false.
func splitStored(s string) (rev uint64, value []byte, ok bool) {
	r, v, found := strings.Cut(s, " ")
	if !found {
		return 0, nil, false
	}
	rev, err := strconv.ParseUint(r, 10, 64)
	if err != nil || rev == 0 {
		return 0, nil, false
	}
	return rev, []byte(v), true
}
