package postgres

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
)

const (
	transactionColumns = `id, idempotency_key, kind, effective_at, recorded_at, batch_seq, metadata, reverses,
       EXISTS (SELECT 1 FROM lots WHERE id = t.id) OR EXISTS (SELECT 1 FROM lot_reliefs WHERE tx_id = t.id)`
	selectTransaction      = `SELECT ` + transactionColumns + ` FROM transactions t WHERE id = $1`
	selectTransactionByKey = `SELECT ` + transactionColumns + ` FROM transactions t WHERE idempotency_key = $1`
	selectLot              = `SELECT ` + lotColumns + ` FROM lots WHERE id = $1`
	selectLotMoves         = `
SELECT r.tx_id, t.kind, t.reverses, t.recorded_at, r.units, r.value, r.refunded
FROM lot_reliefs r JOIN transactions t ON t.id = r.tx_id
WHERE r.lot_id = $1 ORDER BY t.recorded_at, t.batch_seq`
	selectTotal = `
SELECT COALESCE(SUM(b.balance), 0), COALESCE(array_agg(DISTINCT a.asset) FILTER (WHERE a.asset IS NOT NULL), '{}')
FROM accounts a JOIN balances b ON b.account_id = a.id
WHERE left(a.name, length($1)) = $1`
	selectAccounts = `SELECT ` + accountColumns + ` FROM accounts
WHERE name > $2 AND left(name, length($1)) = $1 ORDER BY name LIMIT $3`
	// The same as a range of the name index, where names sort bytewise: $4
	// is the least string above every name starting with $1.
	selectAccountsRange = `SELECT ` + accountColumns + ` FROM accounts
WHERE name > $2 AND name >= $1 AND name < $4 AND left(name, length($1)) = $1 ORDER BY name LIMIT $3`
	selectPostings = `
SELECT a.name, e.account_id, e.asset, e.side, e.amount
FROM entries e JOIN accounts a ON a.id = e.account_id
WHERE e.tx_id = $1 ORDER BY e.idx`
)

// Transaction reads a posted transaction with its postings.
func (db *DB) Transaction(ctx context.Context, id uuid.UUID) (*ledger.Transaction, error) {
	return db.transaction(ctx, "postgres.Transaction", id.String(), selectTransaction, id)
}

// TransactionByKey reads the transaction posted under an idempotency key.
func (db *DB) TransactionByKey(ctx context.Context, key string) (*ledger.Transaction, error) {
	return db.transaction(ctx, "postgres.TransactionByKey", key, selectTransactionByKey, key)
}

func (db *DB) transaction(ctx context.Context, op, name, query string, arg any) (*ledger.Transaction, error) {
	var t ledger.Transaction
	err := db.pool.QueryRow(ctx, query, arg).Scan(
		&t.ID, &t.IdempotencyKey, &t.Kind, &t.EffectiveAt, &t.RecordedAt, &t.BatchSeq, &t.Metadata, &t.Reverses, &t.MovesLots)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &ledger.Error{Op: op, Err: ledger.ErrTransactionNotFound, Message: name}
	}
	if err != nil {
		return nil, storeError(op, err)
	}
	t.EffectiveAt, t.RecordedAt = t.EffectiveAt.UTC(), t.RecordedAt.UTC()
	t.Metadata = ledger.StoredMetadata(t.Metadata)
	rows, _ := db.pool.Query(ctx, selectPostings, t.ID)
	var p ledger.Posting
	var side string
	_, err = pgx.ForEachRow(rows, []any{&p.Account, &p.AccountID, &p.Asset, &side, &p.Amount}, func() error {
		p.Side, _ = ledger.ParseSide(side)
		t.Postings = append(t.Postings, p)
		return nil
	})
	if err != nil {
		return nil, storeError(op, err)
	}
	return &t, nil
}

// loadReplays fills in the original transaction of every replayed key.
func (db *DB) loadReplays(ctx context.Context, batch []*ledger.Pending) error {
	for _, pd := range batch {
		if pd.Outcome != ledger.Replay {
			continue
		}
		t, err := db.Transaction(ctx, pd.ReplayOf)
		if err != nil {
			return err
		}
		t.Replayed = true
		pd.Tx = *t
	}
	return nil
}

const (
	sumShards       = `SELECT COALESCE(SUM(balance), 0) FROM balances WHERE account_id = $1`
	sumShardsOfMany = `
SELECT a.id, COALESCE(SUM(b.balance), 0)
FROM unnest($1::uuid[]) AS a (id) LEFT JOIN balances b ON b.account_id = a.id
GROUP BY a.id`
	// What the entries recorded in ($3, $4] move on the account's normal
	// side ($2), and how many there are.
	movedIn = `COALESCE(SUM(CASE WHEN side = $2 THEN amount ELSE -amount END), 0), count(*)
FROM entries WHERE account_id = $1 AND recorded_at > $3 AND recorded_at <= $4`
	sumEntriesBetween = `SELECT ` + movedIn
	// The balance now less what was recorded after $3 ($4 is endOfTime):
	// one statement, so both sums see the same committed transactions.
	sumBackFromNow = `
SELECT (` + sumShards + `) - s.moved, s.n
FROM (SELECT ` + movedIn + `) AS s (moved, n)`
	// Where a balance as of $2 can be summed from: the account's first
	// entry, now, and the nearest checkpoints on either side.
	selectAsOfAnchors = `
SELECT (SELECT min(recorded_at) FROM entries WHERE account_id = $1), now(), b.as_of, b.balance, n.as_of, n.balance
FROM (VALUES (1)) AS one (x)
LEFT JOIN LATERAL (SELECT as_of, balance FROM balance_checkpoints
                   WHERE account_id = $1 AND as_of <= $2 ORDER BY as_of DESC LIMIT 1) AS b ON true
LEFT JOIN LATERAL (SELECT as_of, balance FROM balance_checkpoints
                   WHERE account_id = $1 AND as_of > $2 ORDER BY as_of LIMIT 1) AS n ON true`
	insertCheckpoint = `
INSERT INTO balance_checkpoints (account_id, as_of, balance) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	selectEntries = `
SELECT e.tx_id, e.idx, t.kind, e.side, e.amount, t.effective_at, e.recorded_at, e.batch_seq
FROM entries e JOIN transactions t ON t.id = e.tx_id
WHERE e.account_id = $1 AND (e.recorded_at, e.batch_seq, e.tx_id, e.idx) > ($2, $3, $4, $5) AND e.recorded_at <= $7
ORDER BY e.recorded_at, e.batch_seq, e.tx_id, e.idx
LIMIT $6`
)

// Balance is the account's normal-side balance now, or as of a recorded time.
// A balance as of a time sums the account's entries from whichever anchor is
// nearest to it: forward from the first entry or from a checkpoint before
// it, or back from the balance now or from a checkpoint after it. Hot
// accounts take an entry per gift, so summing from the start made a balance
// as of last night cost the account's whole history. A sum over many
// entries to a settled instant is kept as a checkpoint for the next.
func (db *DB) Balance(ctx context.Context, a *ledger.Account, asOf time.Time) (decimal.Decimal, error) {
	const op = "postgres.Balance"
	var b decimal.Decimal
	if asOf.IsZero() {
		if err := db.pool.QueryRow(ctx, sumShards, a.ID).Scan(&b); err != nil {
			return b, storeError(op, err)
		}
		return b, nil
	}
	out, err := db.balancesAsOf(ctx, []*ledger.Account{a}, asOf)
	if err != nil {
		return b, storeError(op, err)
	}
	return out[0], nil
}

// checkpointMinEntries is how many entries a balance as of a settled instant
// must have summed before it is kept: fewer are cheaper to sum again than
// to store.
const checkpointMinEntries = 1000

// balancesAsOf reads the accounts' balances as of asOf in three pipelined
// round trips, however many accounts: where each can be summed from, the
// sums, and the checkpoints worth keeping.
func (db *DB) balancesAsOf(ctx context.Context, accounts []*ledger.Account, asOf time.Time) ([]decimal.Decimal, error) {
	type anchors struct {
		first, before, after *time.Time // nil: no entries yet, no checkpoint
		now                  time.Time
		atBefore, atAfter    decimal.NullDecimal
	}
	found := make([]anchors, len(accounts))
	b := &pgx.Batch{}
	for i, a := range accounts {
		f := &found[i]
		b.Queue(selectAsOfAnchors, a.ID, asOf).QueryRow(func(row pgx.Row) error {
			return row.Scan(&f.first, &f.now, &f.before, &f.atBefore, &f.after, &f.atAfter)
		})
	}
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	out := make([]decimal.Decimal, len(accounts))
	counted := make([]int64, len(accounts))
	sums := 0
	b = &pgx.Batch{}
	if !db.cockroach {
		// Each sum planned for its instant: how many entries lie on the
		// summed side depends on it, and a plan cached for another (a
		// prepared statement's generic plan) may scan the table. The
		// setting lasts for the pipeline's implicit transaction.
		b.Queue(`SELECT set_config('plan_cache_mode', 'force_custom_plan', true)`)
	}
	for i, a := range accounts {
		f := &found[i]
		if f.first == nil || asOf.Before(*f.first) {
			continue // zero
		}
		if f.before != nil && f.before.Equal(asOf) {
			out[i] = f.atBefore.Decimal
			continue
		}
		side := a.Normal.String()
		// From a kept balance: it plus what moved since, or less what moved
		// until it. Otherwise the sum is the balance itself.
		var kept *decimal.Decimal
		back := false
		// The nearest anchor by time, standing in for the fewest entries.
		switch nearest := min(asOf.Sub(*f.first), f.now.Sub(asOf), span(f.before, &asOf), span(&asOf, f.after)); {
		case f.before != nil && nearest == asOf.Sub(*f.before):
			b.Queue(sumEntriesBetween, a.ID, side, *f.before, asOf)
			kept = &f.atBefore.Decimal
		case f.after != nil && nearest == f.after.Sub(asOf):
			b.Queue(sumEntriesBetween, a.ID, side, asOf, *f.after)
			kept, back = &f.atAfter.Decimal, true
		case nearest == f.now.Sub(asOf):
			b.Queue(sumBackFromNow, a.ID, side, asOf, endOfTime)
		default: // forward from just before the first entry
			b.Queue(sumEntriesBetween, a.ID, side, f.first.Add(-time.Microsecond), asOf)
		}
		b.QueuedQueries[len(b.QueuedQueries)-1].QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&out[i], &counted[i]); err != nil || kept == nil {
				return err
			}
			if back {
				out[i] = kept.Sub(out[i])
			} else {
				out[i] = kept.Add(out[i])
			}
			return nil
		})
		sums++
	}
	if sums > 0 {
		if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
			return nil, err
		}
	}
	b = &pgx.Batch{}
	for i, a := range accounts {
		if counted[i] >= db.checkpointMinEntries && asOf.Before(found[i].now.Add(-db.checkpointSettled)) {
			b.Queue(insertCheckpoint, a.ID, asOf, out[i])
		}
	}
	if b.Len() > 0 {
		if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// endOfTime stands for "no upper bound" in a span of recorded times: a bound
// the index can range over rather than a condition tested on every row.
// Both databases hold timestamps past it.
var endOfTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// span is how far apart two instants are, or as far as can be when either
// is missing.
func span(from, to *time.Time) time.Duration {
	if from == nil || to == nil {
		return math.MaxInt64
	}
	return to.Sub(*from)
}

// Balances reads the current balances of many accounts in one query, or
// their balances as of a recorded time, each summed from its nearest anchor
// as Balance does, in pipelined round trips. Once the commit
// timeout has passed since asOf, no transaction can still be recorded
// before it, so the balances agree with each other without one snapshot.
func (db *DB) Balances(ctx context.Context, accounts []*ledger.Account, asOf time.Time) ([]decimal.Decimal, error) {
	if !asOf.IsZero() {
		out, err := db.balancesAsOf(ctx, accounts, asOf)
		if err != nil {
			return nil, storeError("postgres.Balances", err)
		}
		return out, nil
	}
	// Each account once: a repeated id would join its shard rows twice.
	ids := make([]uuid.UUID, 0, len(accounts))
	seen := make(map[uuid.UUID]bool, len(accounts))
	for _, a := range accounts {
		if !seen[a.ID] {
			seen[a.ID] = true
			ids = append(ids, a.ID)
		}
	}
	rows, _ := db.pool.Query(ctx, sumShardsOfMany, pgUUIDs(ids))
	byID := make(map[uuid.UUID]decimal.Decimal, len(ids))
	var id uuid.UUID
	var b decimal.Decimal
	if _, err := pgx.ForEachRow(rows, []any{&id, &b}, func() error { byID[id] = b; return nil }); err != nil {
		return nil, storeError("postgres.Balances", err)
	}
	out := make([]decimal.Decimal, len(accounts))
	for i, a := range accounts {
		out[i] = byID[a.ID]
	}
	return out, nil
}

// Entries pages through an account's entries in commit order.
func (db *DB) Entries(ctx context.Context, a *ledger.Account, after ledger.Cursor, until time.Time, limit int) ([]ledger.Entry, error) {
	if after.IsZero() {
		after.RecordedAt = time.Unix(0, 0)
		after.BatchSeq = -1
	}
	if until.IsZero() {
		until = endOfTime
	}
	rows, _ := db.pool.Query(ctx, selectEntries, a.ID, after.RecordedAt, after.BatchSeq, after.TxID, after.Index, limit, until)
	var out []ledger.Entry
	var e ledger.Entry
	var side string
	_, err := pgx.ForEachRow(rows, []any{&e.TxID, &e.Index, &e.Kind, &side, &e.Amount, &e.EffectiveAt, &e.RecordedAt, &e.BatchSeq}, func() error {
		e.Side, _ = ledger.ParseSide(side)
		e.EffectiveAt, e.RecordedAt = e.EffectiveAt.UTC(), e.RecordedAt.UTC()
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, storeError("postgres.Entries", err)
	}
	return out, nil
}

// Lot reads a lot as committed.
func (db *DB) Lot(ctx context.Context, id uuid.UUID) (*ledger.Lot, error) {
	const op = "postgres.Lot"
	l := &ledger.Lot{}
	err := db.pool.QueryRow(ctx, selectLot, id).Scan(&l.ID, &l.AccountID, &l.OpenedAt, &l.BatchSeq, &l.Units, &l.UnitsLeft,
		&l.ValueAccountID, &l.ValueAsset, &l.Value, &l.ValueLeft, &l.Refunded)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &ledger.Error{Op: op, Err: ledger.ErrLotNotFound, Message: id.String()}
	}
	if err != nil {
		return nil, storeError(op, err)
	}
	l.OpenedAt = l.OpenedAt.UTC()
	return l, nil
}

// LotMoves lists every relief, refund and restore of a lot in commit order.
func (db *DB) LotMoves(ctx context.Context, lot uuid.UUID) ([]ledger.LotMove, error) {
	rows, _ := db.pool.Query(ctx, selectLotMoves, lot)
	var out []ledger.LotMove
	var m ledger.LotMove
	_, err := pgx.ForEachRow(rows, []any{&m.TxID, &m.Kind, &m.Reverses, &m.RecordedAt, &m.Units, &m.Value, &m.Refunded}, func() error {
		m.LotID, m.RecordedAt = lot, m.RecordedAt.UTC()
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, storeError("postgres.LotMoves", err)
	}
	return out, nil
}

// Accounts pages through accounts whose names start with prefix.
func (db *DB) Accounts(ctx context.Context, prefix, after string, limit int) ([]*ledger.Account, error) {
	var rows pgx.Rows
	var err error
	if above, ok := prefixEnd(prefix); ok && db.bytewiseNames {
		rows, err = db.pool.Query(ctx, selectAccountsRange, prefix, after, limit, above)
	} else {
		rows, err = db.pool.Query(ctx, selectAccounts, prefix, after, limit)
	}
	if err != nil {
		return nil, storeError("postgres.Accounts", err)
	}
	out, err := scanAccounts(rows)
	if err != nil {
		return nil, storeError("postgres.Accounts", err)
	}
	return out, nil
}

// Total sums the balances of the accounts whose names start with prefix.
func (db *DB) Total(ctx context.Context, prefix string) (decimal.Decimal, []string, error) {
	var total decimal.Decimal
	var assets []string
	if err := db.pool.QueryRow(ctx, selectTotal, prefix).Scan(&total, &assets); err != nil {
		return total, nil, storeError("postgres.Total", err)
	}
	return total, assets, nil
}

// prefixEnd returns the least string greater than every string starting with
// prefix, for ASCII prefixes (account names are ASCII); false when there is
// none to give (an empty prefix).
func prefixEnd(prefix string) (string, bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0x7f {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}
