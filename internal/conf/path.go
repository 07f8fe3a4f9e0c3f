package conf

import (
	"path/filepath"
	"reflect"
)

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

var pathType = reflect.TypeFor[Path]()

// MapPaths replaces every [Path] in the configuration v points to (in
// structs, pointers, slices and maps, however deep) with f of it. It lets
// a caller redirect the files a configuration names, as `portcullis check`
// does with what serve would create.
func MapPaths(v any, f func(Path) Path) {
	mapPaths(reflect.ValueOf(v), f)
}

func mapPaths(v reflect.Value, f func(Path) Path) {
	if v.Type() == pathType {
		if v.CanSet() {
			v.Set(reflect.ValueOf(f(v.Interface().(Path))))
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			mapPaths(v.Elem(), f)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				mapPaths(v.Field(i), f)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			mapPaths(v.Index(i), f)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(iter.Value())
			mapPaths(e, f)
			v.SetMapIndex(iter.Key(), e)
		}
	}
}
