package conf

import "path/filepath"

// Path is a file or directory name written in the configuration file. The
// decoder resolves a relative name against the directory of the file it
// was written in, once, so code that opens a Path never needs to know
// where the configuration came from. The empty Path means "not set".
type Path string

// String returns the path.
func (p Path) String() string { return string(p) }

// IsZero reports whether no path was set.
func (p Path) IsZero() bool { return p == "" }

// Join returns the path of name inside directory p.
func (p Path) Join(name ...string) Path {
	return Path(filepath.Join(append([]string{string(p)}, name...)...))
}

// UnmarshalConfigPath implements [PathUnmarshaler].
func (p *Path) UnmarshalConfigPath(text []byte, dir string) error {
	*p = Path(Resolve(dir, string(text)))
	return nil
}

// A PathUnmarshaler decodes a scalar that may name a file. dir is the
// absolute directory of the configuration file, against which a relative
// name is resolved. The decoder prefers it to [encoding.TextUnmarshaler].
type PathUnmarshaler interface {
	UnmarshalConfigPath(text []byte, dir string) error
}

// Resolve makes a relative name relative to dir. An empty name stays
// empty: it means the key was not set.
func Resolve(dir, name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

// BaseDir is the absolute directory of the configuration file at file:
// what its relative paths are relative to.
func BaseDir(file string) string {
	dir := filepath.Dir(file)
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
