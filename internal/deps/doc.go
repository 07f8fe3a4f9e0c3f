// Package deps holds no code: its test locks the import graph of the
// module (STYLE.md §2.1). Every package is listed with the packages of
// this module it may import; a new package, or a new edge, must be added
// to the table on purpose.
package deps
