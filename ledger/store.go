package ledger

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Store is what the service needs from storage. Implementations translate
// their own errors into this package's kinds.
type Store interface {
	CreateAsset(ctx context.Context, a Asset) (Asset, error)
	Asset(ctx context.Context, code string) (Asset, error)
	// CreateAccount inserts a, or returns the existing account of that name
	// when its definition is the same (ErrAccountExists when it is not).
	CreateAccount(ctx context.Context, a *Account) (*Account, error)
	Account(ctx context.Context, name string) (*Account, error)
	// AccountsByName reads the accounts among names in one query, in any
	// order; names that are no account's are left out.
	AccountsByName(ctx context.Context, names []string) ([]*Account, error)
	// SetAccountStatus changes the named accounts' status in one
	// transaction, while holding every balance row of theirs, so it orders
	// cleanly against batches posting to them; it returns them in the order
	// named.
	SetAccountStatus(ctx context.Context, names []string, s Status) ([]*Account, error)
	// CommitBatch locks what PlanBatch asks for, calls Decide, writes the
	// accepted transactions and commits, retrying conflicts; then loads the
	// originals of replays. An error means nothing in the batch was posted.
	CommitBatch(ctx context.Context, lane int, batch []*Pending) error
	// NewTransactionID makes the id of a transaction about to be posted, in
	// the order that suits the store's indexes.
	NewTransactionID() uuid.UUID
	Transaction(ctx context.Context, id uuid.UUID) (*Transaction, error)
	// TransactionByKey finds a transaction by its idempotency key.
	TransactionByKey(ctx context.Context, key string) (*Transaction, error)
	// Lot reads a lot as committed; LotMoves lists every relief, refund and
	// restore of it in commit order.
	Lot(ctx context.Context, id uuid.UUID) (*Lot, error)
	LotMoves(ctx context.Context, lot uuid.UUID) ([]LotMove, error)
	// Accounts pages through the accounts whose names start with prefix, in
	// name order, after the name given.
	Accounts(ctx context.Context, prefix, after string, limit int) ([]*Account, error)
	// Total sums the normal-side balances of the accounts whose names start
	// with prefix, and lists the assets they hold.
	Total(ctx context.Context, prefix string) (decimal.Decimal, []string, error)
	// Balance is the normal-side balance of a, now (asOf zero) or as of a
	// past recorded time.
	Balance(ctx context.Context, a *Account, asOf time.Time) (decimal.Decimal, error)
	// Balances are the normal-side balances of accounts, in their order:
	// now (asOf zero, read in one query) or as of a past recorded time.
	Balances(ctx context.Context, accounts []*Account, asOf time.Time) ([]decimal.Decimal, error)
	// Entries pages through a's entries in commit order, after a cursor and
	// recorded at or before until (zero: no bound).
	Entries(ctx context.Context, a *Account, after Cursor, until time.Time, limit int) ([]Entry, error)
	// Verify runs every check over one snapshot, calling progress (if not
	// nil) before each: checks scan whole tables and can take long.
	Verify(ctx context.Context, progress func(check string, n, of int)) (*Report, error)
}

// Entry is one posting as seen from its account.
type Entry struct {
	TxID        uuid.UUID
	Index       int
	Kind        string
	Side        Side
	Amount      decimal.Decimal
	EffectiveAt time.Time
	RecordedAt  time.Time
	BatchSeq    int
}

// Cursor is a position in an account's entries, in the order they were
// committed: (recorded time, batch sequence, transaction id, posting index).
type Cursor struct {
	RecordedAt time.Time
	BatchSeq   int
	TxID       uuid.UUID
	Index      int
}

// After reports the cursor that continues after e.
func (e Entry) After() Cursor {
	return Cursor{RecordedAt: e.RecordedAt, BatchSeq: e.BatchSeq, TxID: e.TxID, Index: e.Index}
}

// CursorAfter is the cursor after every entry recorded at or before t: the
// entries after it are those a balance as of t leaves out.
func CursorAfter(t time.Time) Cursor {
	return Cursor{RecordedAt: t, BatchSeq: math.MaxInt32, TxID: uuid.Max, Index: math.MaxInt32}
}

// IsZero is true for the cursor before the first entry.
func (c Cursor) IsZero() bool { return c.TxID == uuid.Nil }

const cursorLen = 8 + 4 + 16 + 4

// String renders an opaque page token.
func (c Cursor) String() string {
	if c.IsZero() {
		return ""
	}
	var b [cursorLen]byte
	binary.BigEndian.PutUint64(b[0:], uint64(c.RecordedAt.UnixMicro()))
	binary.BigEndian.PutUint32(b[8:], uint32(c.BatchSeq))
	copy(b[12:], c.TxID[:])
	binary.BigEndian.PutUint32(b[28:], uint32(c.Index))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseCursor reads a page token made by Cursor.String; "" is the start.
func ParseCursor(op, field, s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != cursorLen {
		return Cursor{}, invalid(op, field, "is not a page token returned by this ledger")
	}
	c := Cursor{
		RecordedAt: time.UnixMicro(int64(binary.BigEndian.Uint64(b[0:]))).UTC(),
		BatchSeq:   int(binary.BigEndian.Uint32(b[8:])),
		Index:      int(binary.BigEndian.Uint32(b[28:])),
	}
	copy(c.TxID[:], b[12:28])
	// The decoder tolerates line breaks and stray bits; only the canonical
	// spelling is a token this ledger returned.
	if c.TxID == uuid.Nil || c.BatchSeq < 0 || c.Index < 0 || c.Index >= MaxPostings || c.String() != s {
		return Cursor{}, invalid(op, field, "is not a page token returned by this ledger")
	}
	return c, nil
}

// LotMove is one transaction's relief, refund or restore of a lot.
type LotMove struct {
	TxID       uuid.UUID
	Kind       string
	Reverses   *uuid.UUID
	RecordedAt time.Time
	LotRelief
}
