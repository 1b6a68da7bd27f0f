package ledger

// isCanonicalJSON reports whether m is a JSON object exactly as
// canonicalMetadata would render it — compact, every object's keys in
// strictly increasing byte order, strings of printable ASCII that
// encoding/json leaves unescaped (or escapes as \" and \\), numbers and
// literals as they are — so that the decode and re-encode can be skipped.
// It is conservative: anything else (any other escape, non-ASCII, <, >, &,
// deep nesting) answers false and takes the slow path, which also does the
// full validation. FuzzCanonicalFastPath checks that true is never wrong.
func isCanonicalJSON(m []byte) bool {
	if len(m) == 0 || m[0] != '{' {
		return false
	}
	end, ok := scanValue(m, 0, 0)
	return ok && end == len(m)
}

const maxCanonicalDepth = 32

// scanValue checks the canonical value starting at i and returns where it ends.
func scanValue(m []byte, i, depth int) (int, bool) {
	if i >= len(m) || depth > maxCanonicalDepth {
		return i, false
	}
	switch c := m[i]; {
	case c == '{':
		i++
		if i < len(m) && m[i] == '}' {
			return i + 1, true
		}
		var prev []byte
		for {
			start := i
			end, ok := scanString(m, i)
			if !ok {
				return i, false
			}
			key := m[start+1 : end-1]
			if prev != nil && string(key) <= string(prev) {
				return i, false // out of order, or a duplicate
			}
			prev = key
			if end >= len(m) || m[end] != ':' {
				return i, false
			}
			if i, ok = scanValue(m, end+1, depth+1); !ok {
				return i, false
			}
			if i >= len(m) {
				return i, false
			}
			switch m[i] {
			case ',':
				i++
			case '}':
				return i + 1, true
			default:
				return i, false
			}
		}
	case c == '[':
		i++
		if i < len(m) && m[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = scanValue(m, i, depth+1); !ok || i >= len(m) {
				return i, false
			}
			switch m[i] {
			case ',':
				i++
			case ']':
				return i + 1, true
			default:
				return i, false
			}
		}
	case c == '"':
		return scanString(m, i)
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(m, i)
	}
	for _, lit := range []string{"true", "false", "null"} {
		if len(m)-i >= len(lit) && string(m[i:i+len(lit)]) == lit {
			return i + len(lit), true
		}
	}
	return i, false
}

// scanString accepts a string that encoding/json would write back byte for
// byte: printable ASCII but <, > and &, with only \" and \\ escaped.
func scanString(m []byte, i int) (int, bool) {
	if i >= len(m) || m[i] != '"' {
		return i, false
	}
	for i++; i < len(m); i++ {
		switch c := m[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(m) || (m[i+1] != '"' && m[i+1] != '\\') {
				return i, false
			}
			i++
		case c < 0x20 || c > 0x7e || c == '<' || c == '>' || c == '&':
			return i, false
		}
	}
	return i, false
}

// scanNumber accepts a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(m []byte, i int) (int, bool) {
	digits := func(i int) (int, bool) {
		start := i
		for i < len(m) && m[i] >= '0' && m[i] <= '9' {
			i++
		}
		return i, i > start
	}
	if m[i] == '-' {
		i++
	}
	if i < len(m) && m[i] == '0' {
		i++
	} else {
		var ok bool
		if i, ok = digits(i); !ok {
			return i, false
		}
	}
	if i < len(m) && m[i] == '.' {
		var ok bool
		if i, ok = digits(i + 1); !ok {
			return i, false
		}
	}
	if i < len(m) && (m[i] == 'e' || m[i] == 'E') {
		i++
		if i < len(m) && (m[i] == '+' || m[i] == '-') {
			i++
		}
		var ok bool
		if i, ok = digits(i); !ok {
			return i, false
		}
	}
	return i, true
}
