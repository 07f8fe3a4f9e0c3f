package enforcement

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"

	"portcullis/certs"
	"portcullis/posture"
)

// The CEL variables are declared as qualified names ("request.method")
// rather than as message types: every field keeps its exact type for the
// checker, and the activation can answer each name straight from the
// [Input] without building a map per request.
var celVars = []struct {
	name string
	typ  *cel.Type
}{
	{"request.method", cel.StringType},
	{"request.host", cel.StringType},
	{"request.path", cel.StringType},
	{"request.protocol", cel.StringType},
	{"request.remote_ip", cel.StringType},
	{"user.id", cel.StringType},
	{"user.email", cel.StringType},
	{"user.groups", cel.ListType(cel.StringType)},
	{"user.idp", cel.StringType},
	{"user.acr", cel.StringType},
	{"user.amr", cel.ListType(cel.StringType)},
	{"device.present", cel.BoolType},
	{"device.id", cel.StringType},
	{"device.ca", cel.StringType},
	{"device.user", cel.StringType},
	{"device.managed", cel.BoolType},
	{"device.compliant", cel.BoolType},
	{"device.threat", cel.StringType},
	{"device.platform", cel.StringType},
	{"device.os_version", cel.StringType},
	{"risk", cel.StringType},
	{"now", cel.TimestampType},
}

// celCostLimit bounds the worst-case cost of one evaluation (in CEL's
// abstract cost units), estimated at compile time with the size bounds
// below, so a runaway expression is a configuration error rather than a
// slow request; evaluation then needs no cost tracking. Ordinary policies
// stay far below it.
const celCostLimit = 1_000_000

// Size bounds the cost estimate assumes for inputs: strings (a path, a
// group name) and lists (groups, amr).
const (
	celMaxStringSize = 8 << 10
	celMaxListSize   = 1 << 10
)

// sizeEstimator gives the cost estimator the size bounds of the inputs.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	switch n.Type().Kind() {
	case types.StringKind:
		return &checker.SizeEstimate{Min: 0, Max: celMaxStringSize}
	case types.ListKind:
		return &checker.SizeEstimate{Min: 0, Max: celMaxListSize}
	}
	return nil
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// celEnv is built once: building an environment is costly, and a built one
// is safe for concurrent use.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	opts := []cel.EnvOption{
		ext.Strings(),
		cel.ParserRecursionLimit(64),
		cel.ParserExpressionSizeLimit(maxExprLen),
	}
	for _, v := range celVars {
		opts = append(opts, cel.Variable(v.name, v.typ))
	}
	return cel.NewEnv(opts...)
})

// compileExpr parses, type-checks and plans a `when` expression.
func compileExpr(expr string) (cel.Program, error) {
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	ast, iss := env.CompileSource(common.NewStringSource(expr, "expression"))
	if iss.Err() != nil {
		// CEL's own message, with its position inside the expression and a
		// caret under the problem; only its noise is trimmed.
		msg := strings.ReplaceAll(iss.Err().Error(), "ERROR: ", "")
		msg = strings.ReplaceAll(msg, " (in container '')", "")
		return nil, errors.New(msg)
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("expression returns %s, want bool", ast.OutputType())
	}
	cost, err := env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		return nil, fmt.Errorf("estimating the expression's cost: %w", err)
	}
	if cost.Max > celCostLimit {
		return nil, fmt.Errorf("expression may cost up to %d units to evaluate, more than the limit of %d", cost.Max, celCostLimit)
	}
	prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("planning the expression: %w", err)
	}
	return prog, nil
}

// evalExpr runs p's expression over in. The result is false with an error
// for anything but a bool.
func evalExpr(p *Policy, in *Input) (bool, error) {
	out, _, err := p.prog.Eval((*activation)(in))
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("expression returned %s, want bool", out.Type())
	}
	return bool(b), nil
}

// activation answers CEL's variable lookups from an [Input], computing each
// value only when the expression asks for it. It is the Input itself under
// another method set, so passing one to CEL allocates nothing.
type activation Input

var emptyList = types.NewStringList(types.DefaultTypeAdapter, nil)

func stringList(s []string) ref.Val {
	if len(s) == 0 {
		return emptyList
	}
	return types.NewStringList(types.DefaultTypeAdapter, s)
}

// ResolveName implements [interpreter.Activation].
func (a *activation) ResolveName(name string) (any, bool) {
	in := (*Input)(a)
	sub, dev := in.Subject, in.Device
	if sub == nil {
		sub = &noSubject
	}
	if dev == nil {
		dev = &noDevice
	}
	switch name {
	case "request.method":
		return types.String(in.Request.Method), true
	case "request.host":
		return types.String(in.Request.Host), true
	case "request.path":
		return types.String(in.Request.Path), true
	case "request.protocol":
		return types.String(in.Request.Protocol), true
	case "request.remote_ip":
		return types.String(in.Request.RemoteIP), true
	case "user.id":
		return types.String(sub.UserID), true
	case "user.email":
		return types.String(sub.Email), true
	case "user.groups":
		return stringList(sub.Groups), true
	case "user.idp":
		return types.String(sub.IdP), true
	case "user.acr":
		return types.String(sub.ACR), true
	case "user.amr":
		return stringList(sub.AMR), true
	case "device.present":
		return types.Bool(in.Device != nil), true
	case "device.id":
		return types.String(dev.DeviceID), true
	case "device.ca":
		return types.String(dev.CA), true
	case "device.user":
		return types.String(dev.User), true
	case "device.managed":
		return types.Bool(a.all(func(r *posture.Posture) bool { return r.Managed })), true
	case "device.compliant":
		return types.Bool(a.all(func(r *posture.Posture) bool { return r.Compliance == posture.Compliant })), true
	case "device.threat":
		return types.String(a.threat()), true
	case "device.platform":
		return types.String(a.first(func(r *posture.Posture) string { return r.Platform })), true
	case "device.os_version":
		return types.String(a.first(func(r *posture.Posture) string { return r.OSVersion })), true
	case "risk":
		if in.Risk == nil {
			return types.String(""), true
		}
		return types.String(riskName(in.Risk.Level)), true
	case "now":
		return types.Timestamp{Time: in.Now}, true
	}
	return nil, false
}

// Parent implements [interpreter.Activation].
func (*activation) Parent() interpreter.Activation { return nil }

// Stand-ins for an absent subject or device: CEL sees empty values.
var (
	noSubject Subject
	noDevice  certs.DeviceIdentity
)

// records returns the posture records that belong to the input's device:
// none without a certificate, or when the snapshot is another device's.
func (a *activation) records() []posture.Posture {
	return deviceRecords((*Input)(a))
}

// all reports whether f holds for every record, and false without any.
func (a *activation) all(f func(*posture.Posture) bool) bool {
	rs := a.records()
	for i := range rs {
		if !f(&rs[i]) {
			return false
		}
	}
	return len(rs) > 0
}

// first returns the first non-empty value f gives over the records.
func (a *activation) first(f func(*posture.Posture) string) string {
	rs := a.records()
	for i := range rs {
		if s := f(&rs[i]); s != "" {
			return s
		}
	}
	return ""
}

// threat returns the worst threat level over the records, or "" when there
// is none or any record leaves it unreported (as max_threat treats it).
func (a *activation) threat() string {
	rs := a.records()
	worst := posture.ThreatUnknown
	for i := range rs {
		if rs[i].Threat == posture.ThreatUnknown {
			return ""
		}
		worst = max(worst, rs[i].Threat)
	}
	return threatName(worst)
}
