package gateway

import (
	"unsafe"

	"portcullis/enforcement"
)

// requestState is what the gateway keeps of one request, in one
// allocation: the decision's input, and for a request that is proxied
// its live entry, which is also the context the proxy runs under and
// carries the identity headers to the resource's Rewrite. Before it
// existed each of these was an allocation of its own, besides the request
// id's string and a second request copy (issue #15). It is never reused:
// the registry, the re-evaluator and the request id string may refer to
// it after the handler returns.
type requestState struct {
	in    enforcement.Input
	live  liveEntry
	idBuf [idLen]byte
}

// nextID gives st its request id and returns it with its sequence
// number. The string shares st's memory: idBuf is written once, here,
// before the string exists, and never again, and st is never reused, so
// the string is as immutable as any other.
func (g *idGen) nextID(st *requestState) (string, uint64) {
	seq := g.fill(&st.idBuf)
	return unsafe.String(&st.idBuf[0], len(st.idBuf)), seq
}
