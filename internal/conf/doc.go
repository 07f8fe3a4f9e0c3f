// Package conf holds the primitives every configuration section uses: a
// strict YAML decoder that reports file, line and column for every problem
// (not only the first), field errors that name their key, durations, and
// secrets read from files that never print.
//
// Each package owns its own Config type (posture.Config lives in posture);
// this package knows nothing of their meaning.
package conf
