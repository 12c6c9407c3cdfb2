// Package memscan finds a string in memory reachable from a value, for tests
// that check that a store keeps no personal data in clear: every string and
// byte slice reachable through pointers, interfaces, maps, slices, arrays
// and struct fields, unexported ones included, is searched.
package memscan

import (
	"reflect"
	"strings"
)

// Holds reports whether s occurs in any string or byte slice reachable from
// v.
func Holds(v any, s string) bool {
	return holds(reflect.ValueOf(v), s, map[uintptr]bool{})
}

func holds(v reflect.Value, s string, seen map[uintptr]bool) bool {
	switch v.Kind() {
	case reflect.String:
		return strings.Contains(v.String(), s)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return strings.Contains(string(v.Bytes()), s)
		}
		for i := range v.Len() {
			if holds(v.Index(i), s, seen) {
				return true
			}
		}
	case reflect.Array:
		for i := range v.Len() {
			if holds(v.Index(i), s, seen) {
				return true
			}
		}
	case reflect.Pointer:
		if v.IsNil() || seen[v.Pointer()] {
			return false
		}
		seen[v.Pointer()] = true
		return holds(v.Elem(), s, seen)
	case reflect.Interface:
		return !v.IsNil() && holds(v.Elem(), s, seen)
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if holds(it.Key(), s, seen) || holds(it.Value(), s, seen) {
				return true
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if holds(v.Field(i), s, seen) {
				return true
			}
		}
	}
	return false
}
