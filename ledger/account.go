package ledger

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Side is the side of a posting, and the normal side of an account.
type Side uint8

const (
	Debit Side = iota + 1
	Credit
)

func (s Side) String() string {
	switch s {
	case Debit:
		return "debit"
	case Credit:
		return "credit"
	}
	return "invalid"
}

// ParseSide reads "debit" or "credit".
func ParseSide(s string) (Side, bool) {
	switch s {
	case "debit":
		return Debit, true
	case "credit":
		return Credit, true
	}
	return 0, false
}

// Status is an account's lifecycle state.
type Status string

const (
	Open   Status = "open"
	Frozen Status = "frozen" // temporarily refuses postings; can be reopened
	Closed Status = "closed" // refuses postings for good
)

// MaxShards bounds how many balance rows one account's balance is spread over.
const MaxShards = 64

// Account holds one asset. Its balance is reported on its normal side:
// a credit-normal account (a wallet, a payable) grows with credits, a
// debit-normal one (a receivable, an expense) with debits.
//
// Shards spreads a hot account's balance over several rows so that concurrent
// writers credit different rows; see docs/architecture.md.
type Account struct {
	ID            uuid.UUID
	Name          string
	Asset         string
	Normal        Side
	AllowNegative bool
	Shards        int
	// PerShard makes each balance row stand alone: a commit lane reads and
	// writes only its own row, and each row must stay in range by itself
	// (the escrow pattern). Carries use it (carry.go).
	PerShard  bool
	Status    Status
	Metadata  json.RawMessage
	CreatedAt time.Time
}

// lowers reports whether a posting on this account lowers its balance as
// reported on the account's normal side.
func (a *Account) lowers(side Side, amount decimal.Decimal) bool {
	if side == a.Normal {
		return amount.Sign() < 0
	}
	return amount.Sign() > 0
}

// MaxNameLength bounds account names, idempotency keys and kinds.
const MaxNameLength = 200

// ValidateAccountName accepts hierarchical names such as
// "creator:42:diamonds:available": segments of letters, digits, '_', '.' or '-'
// joined by ':'.
func ValidateAccountName(op, field, name string) error {
	if name == "" {
		return invalid(op, field, "is required")
	}
	if len(name) > MaxNameLength {
		return invalid(op, field, "is longer than %d bytes", MaxNameLength)
	}
	for rest := name; ; {
		segment, after, more := strings.Cut(rest, ":")
		if !IsNameSegment(segment) {
			return invalid(op, field, "must be segments of letters, digits, '_', '.' or '-' separated by ':'")
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// validatePrefix refuses a prefix that no account name could start with, so
// that bytes the database cannot hold in text (NUL, invalid UTF-8) are
// refused as input rather than failing in SQL.
func validatePrefix(op, prefix string) error {
	if len(prefix) > MaxNameLength {
		return invalid(op, "prefix", "is longer than %d bytes", MaxNameLength)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c != ':' && !isNameByte(c) {
			return invalid(op, "prefix", "may hold only letters, digits, '_', '.', '-' and ':', as account names do")
		}
	}
	return nil
}

// IsNameSegment reports whether s is one segment of an account name: one or
// more letters, digits, '_', '.' or '-'. A loop rather than a regular
// expression, which cost 1-2% of the server's CPU: every posting's accounts
// and every gift's ids are checked on the write path.
func IsNameSegment(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
}

// Validate checks a new account's attributes; ID and CreatedAt are assigned later.
func (a *Account) Validate(op string) error {
	if err := ValidateAccountName(op, "name", a.Name); err != nil {
		return err
	}
	if !assetCodeRE.MatchString(a.Asset) {
		return invalid(op, "asset", "must be an asset code such as USD or COIN")
	}
	if a.Normal != Debit && a.Normal != Credit {
		return invalid(op, "normal", "must be debit or credit")
	}
	if a.Shards < 1 || a.Shards > MaxShards {
		return invalid(op, "shards", "must be between 1 and %d", MaxShards)
	}
	if a.PerShard && a.AllowNegative {
		return invalid(op, "per_shard", "needs an account that may not go negative: its rows are checked one by one")
	}
	switch a.Status {
	case Open, Frozen, Closed:
	default:
		return invalid(op, "status", "must be open, frozen or closed")
	}
	return validateMetadata(op, "metadata", a.Metadata)
}

// SameDefinition reports whether b asks for the account a already is, so that
// creating an existing account again is a no-op rather than a conflict.
func (a *Account) SameDefinition(b *Account) bool {
	return a.Name == b.Name && a.DefinitionDiff(b) == ""
}

// DefinitionDiff names the attributes in which b differs from a, as
// "shards 8, asked 4; ...": empty when they are defined alike.
func (a *Account) DefinitionDiff(b *Account) string {
	var diffs []string
	add := func(attr string, have, asked any) {
		if have != asked {
			diffs = append(diffs, fmt.Sprintf("%s %v, asked %v", attr, have, asked))
		}
	}
	add("asset", a.Asset, b.Asset)
	add("normal side", a.Normal, b.Normal)
	add("allow negative", a.AllowNegative, b.AllowNegative)
	add("shards", a.Shards, b.Shards)
	add("per shard", a.PerShard, b.PerShard)
	return strings.Join(diffs, "; ")
}
