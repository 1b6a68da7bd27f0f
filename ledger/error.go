package ledger

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kind is the stable class of an error. Transports map kinds to their own
// status codes in one table; callers branch on kinds, never on messages.
type Kind uint8

const (
	KindOther          Kind = iota // zero value: look further down the chain
	Invalid                        // the request itself is malformed; retrying it cannot help
	NotFound                       // a named thing does not exist
	Conflict                       // an idempotency key was reused with different content
	InsufficientFunds              // a balance policy refused the posting
	FailedPrecondition             // the ledger's state forbids it now (frozen, closed, already reversed)
	Aborted                        // contention outlasted the retry budget; safe to retry with the same key
	Unavailable                    // the database could not be reached or went away; retry (a write with the same key)
	Internal                       // a fault of ours or of the database
)

var kindNames = map[Kind]string{
	KindOther:          "other",
	Invalid:            "invalid",
	NotFound:           "not found",
	Conflict:           "conflict",
	InsufficientFunds:  "insufficient funds",
	FailedPrecondition: "failed precondition",
	Aborted:            "aborted",
	Unavailable:        "unavailable",
	Internal:           "internal",
}

func (k Kind) String() string { return kindNames[k] }

// Error is the ledger's error: the operation, a stable kind, the request field
// at fault (for Invalid and for per-posting refusals) and a wrapped cause.
type Error struct {
	Op      string // e.g. "ledger.Post"
	Kind    Kind
	Field   string // e.g. "postings[1].amount"
	Message string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Err != nil {
		if e.Message != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Reason is what err says without its operations and field names: each
// layer's message, outermost first. Operations and field names are the
// domain's words for its own calls; a transport puts the caller's field in
// front instead, and a layer that rewords a refusal keeps its reason as the
// message.
func Reason(err error) string {
	var parts []string
	for cause := err; cause != nil; {
		e, ok := cause.(*Error)
		if !ok {
			parts = append(parts, cause.Error())
			break
		}
		if e.Message != "" {
			parts = append(parts, e.Message)
		}
		cause = e.Err
	}
	if len(parts) == 0 { // nothing but kinds along the chain
		return KindOf(err).String()
	}
	return strings.Join(parts, ": ")
}

// KindOf reports the first explicit kind along err's chain; Internal when none.
func KindOf(err error) Kind {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return Internal
		}
		if e.Kind != KindOther {
			return e.Kind
		}
		err = e.Err
	}
	return KindOther
}

// FieldOf reports the first field named along err's chain.
func FieldOf(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Field != "" {
			return e.Field
		}
		err = e.Err
	}
	return ""
}

// Refusals with their own identity, matched with errors.Is.
var (
	ErrAccountNotFound     = &Error{Kind: NotFound, Message: "account not found"}
	ErrAssetNotFound       = &Error{Kind: NotFound, Message: "asset not found"}
	ErrTransactionNotFound = &Error{Kind: NotFound, Message: "transaction not found"}
	ErrLotNotFound         = &Error{Kind: NotFound, Message: "lot not found"}
	ErrAccountFrozen       = &Error{Kind: FailedPrecondition, Message: "account is frozen"}
	ErrAccountClosed       = &Error{Kind: FailedPrecondition, Message: "account is closed"}
	ErrAlreadyReversed     = &Error{Kind: FailedPrecondition, Message: "transaction has already been reversed"}
	ErrInsufficientFunds   = &Error{Kind: InsufficientFunds, Message: "balance may not go negative"}
	ErrIdempotencyConflict = &Error{Kind: Conflict, Message: "idempotency key was already used with different content"}
	ErrAccountExists       = &Error{Kind: Conflict, Message: "an account with this name exists with different attributes"}
	ErrRetriesExhausted    = &Error{Kind: Aborted, Message: "transaction kept conflicting with concurrent ones; retry with the same idempotency key"}
	ErrClosed              = &Error{Kind: FailedPrecondition, Message: "ledger service is shut down"}
)

func invalid(op, field, format string, args ...any) *Error {
	return &Error{Op: op, Kind: Invalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Indexed names the i-th element of a list field, say "postings[3]".
func Indexed(name string, i int) string { return name + "[" + strconv.Itoa(i) + "]" }

// under puts a field error from a check given the field's last part (say
// "amount", or none for the whole) under its full path's prefix (say
// "postings[3]"), so that hot loops build the indexed path only for an error.
func under(prefix string, err error) error {
	e, ok := err.(*Error)
	if !ok {
		return err
	}
	moved := *e
	moved.Field = prefix
	if e.Field != "" {
		moved.Field += "." + e.Field
	}
	return &moved
}

// wrap adds operation and field context to a sentinel or cause, keeping its kind.
func wrap(op, field string, err error) *Error {
	return &Error{Op: op, Field: field, Err: err}
}
