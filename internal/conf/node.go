package conf

import (
	"fmt"
	"reflect"

	"gopkg.in/yaml.v3"
)

// An Unmarshaler decodes itself from its node of the configuration file.
// It is for types whose keys depend on their content, such as a feed whose
// `type` selects the keys it may have: UnmarshalConfig reads the
// discriminator with [Node.Field], then decodes the whole node strictly
// into the struct (or structs) of that kind with [Node.DecodeStruct]. Problems are
// reported through the node, so they keep their file, line and column.
type Unmarshaler interface {
	UnmarshalConfig(n *Node)
}

// Node is a value of the configuration file being decoded, handed to an
// [Unmarshaler].
type Node struct {
	d   *decoder
	n   *yaml.Node
	key string
}

// Key is the node's key path, such as "posture.feeds[2]".
func (n *Node) Key() string { return n.key }

// Field returns the value of key when n is a mapping that has it, or nil.
func (n *Node) Field(key string) *Node {
	if n.n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.n.Content); i += 2 {
		if n.n.Content[i].Value == key {
			c := n.n.Content[i+1]
			for c.Kind == yaml.AliasNode {
				c = c.Alias
			}
			return &Node{d: n.d, n: c, key: joinKey(n.key, key)}
		}
	}
	return nil
}

// Decode decodes n into v, a non-nil pointer, as the decoder decodes any
// value, and reports whether it did so without a problem. Positions are
// recorded only for what is decoded this way, so call it once per node.
func (n *Node) Decode(v any) bool {
	before := len(n.d.errs)
	n.d.value(n.n, reflect.ValueOf(v).Elem(), n.key)
	return len(n.d.errs) == before
}

// DecodeStruct decodes mapping n strictly into the structs vs point to,
// as if their fields were those of one struct: each key goes to the first
// that has a field for it. A key none has is a problem; unknown, if not
// nil, says why (for example which kinds of the value accept that key),
// or returns "" for the usual message.
func (n *Node) DecodeStruct(unknown func(key string) string, vs ...any) bool {
	before := len(n.d.errs)
	var rvs []reflect.Value
	for _, v := range vs {
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
			panic("conf: DecodeStruct needs pointers to structs")
		}
		rvs = append(rvs, rv.Elem())
	}
	n.d.pos[n.key] = Pos{n.n.Line, n.n.Column}
	if n.n.Kind == yaml.ScalarNode && n.n.Tag == "!!null" {
		return true
	}
	n.d.structValue(n.n, rvs, n.key, unknown)
	return len(n.d.errs) == before
}

// Errorf reports a problem at n.
func (n *Node) Errorf(format string, args ...any) {
	n.d.fail(n.n, n.key, "%s", fmt.Sprintf(format, args...))
}
