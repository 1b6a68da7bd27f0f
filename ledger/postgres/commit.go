package postgres

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
)

// The batch's reads, sent as one pipeline. The lock statement runs first; in
// READ COMMITTED every later statement takes a fresh snapshot, so it sees
// whatever committed before the locks were granted.
const (
	lockShards = `
SELECT b.account_id, b.shard, b.balance
FROM balances b JOIN unnest($1::uuid[], $2::int[]) AS l (account_id, shard)
  ON b.account_id = l.account_id AND b.shard = l.shard
ORDER BY b.account_id, b.shard
FOR UPDATE OF b`
	selectClock = `SELECT clock_timestamp()`
	// Every statement of the write path looks rows up by key. On a small or
	// freshly vacuumed table PostgreSQL's estimates for unnest() make a hash
	// join over a sequential scan look cheaper, which then scans the whole
	// table once per batch; this tells it to use the keys. JIT is off too:
	// a plan costed past jit_above_cost (any forced scan is) would compile
	// for tens of milliseconds while the batch holds its locks. And the
	// statements keep their generic plans: the keyed plan does not depend on
	// the arrays, yet PostgreSQL re-planned the lot statements for every
	// batch (about 120 µs of planning a batch, pg_stat_statements).
	keyedLookups    = `SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true)`
	selectStatuses  = `SELECT id, status FROM accounts WHERE id = ANY($1::uuid[])`
	selectCommitted = `SELECT idempotency_key, id, fingerprint FROM transactions WHERE idempotency_key = ANY($1::text[])`
	selectReversed  = `SELECT reverses FROM transactions WHERE reverses = ANY($1::uuid[])`
	lotColumns      = `id, account_id, opened_at, batch_seq, units, units_left, value_account_id, value_asset, value, value_left, refunded`
	// Every open lot of each account: for a round of deferred reliefs, and on
	// CockroachDB, where the limited read (lockOldestLots, a LATERAL subquery
	// locking its rows) has not been run.
	lockOpenLots = `
SELECT ` + lotColumns + `
FROM lots WHERE account_id = ANY($1::uuid[]) AND is_open
ORDER BY account_id, opened_at, batch_seq, id
FOR UPDATE`
	// The oldest $2 open lots of each account, locked account by account in
	// the plan's (sorted) order.
	lockOldestLots = `
SELECT o.* FROM unnest($1::uuid[]) AS a (id)
CROSS JOIN LATERAL (
  SELECT ` + lotColumns + ` FROM lots WHERE account_id = a.id AND is_open
  ORDER BY opened_at, batch_seq, id LIMIT $2 FOR UPDATE) AS o`
	// Lots named by a refund, lots a reversed transaction drew on, and the lot
	// a reversed transaction opened (so that Decide can refuse to reverse it).
	lockLotsByID = `
SELECT ` + lotColumns + `
FROM lots WHERE id IN (
  SELECT unnest($1::uuid[]) UNION SELECT unnest($2::uuid[])
  UNION SELECT lot_id FROM lot_reliefs WHERE tx_id = ANY($2::uuid[]))
ORDER BY account_id, opened_at, batch_seq, id
FOR UPDATE`
	selectTook = `SELECT tx_id, lot_id, units, value, refunded FROM lot_reliefs WHERE tx_id = ANY($1::uuid[])`

	insertLots = `
INSERT INTO lots (id, account_id, opened_at, batch_seq, units, units_left, value_account_id, value_asset, value, value_left)
SELECT id, acct, $3, seq, units::numeric, units_left::numeric, vacct, vasset, value::numeric, value_left::numeric
FROM unnest($1::uuid[], $2::uuid[], $4::int[], $5::text[], $6::text[], $7::uuid[], $8::text[], $9::text[], $10::text[])
  AS l (id, acct, seq, units, units_left, vacct, vasset, value, value_left)`
	updateLots = `
UPDATE lots l SET units_left = u.units_left::numeric, value_left = u.value_left::numeric, refunded = u.refunded::numeric
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u (id, units_left, value_left, refunded)
WHERE l.id = u.id`
	insertReliefs = `
INSERT INTO lot_reliefs (tx_id, lot_id, units, value, refunded)
SELECT tx, lot, units::numeric, value::numeric, refunded::numeric
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[]) AS r (tx, lot, units, value, refunded)`

	insertTransactions = `
INSERT INTO transactions (id, idempotency_key, fingerprint, kind, effective_at, recorded_at, batch_seq, metadata, reverses)
SELECT id, key, fp, kind, eff, $6, seq, meta::jsonb, rev
FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::text[], $5::timestamptz[], $7::int[], $8::text[], $9::uuid[])
  AS t (id, key, fp, kind, eff, seq, meta, rev)`
	insertEntries = `
INSERT INTO entries (tx_id, idx, account_id, asset, side, amount, recorded_at, batch_seq)
SELECT tx, idx, acct, asset, side, amount::numeric, $7, seq
FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::text[], $5::text[], $6::text[], $8::int[])
  AS e (tx, idx, acct, asset, side, amount, seq)`
	updateBalances = `
UPDATE balances b SET balance = b.balance + d.delta::numeric
FROM unnest($1::uuid[], $2::int[], $3::text[]) AS d (account_id, shard, delta)
WHERE b.account_id = d.account_id AND b.shard = d.shard`
)

// NewTransactionID is time-ordered (UUIDv7) on PostgreSQL, so the b-trees
// keyed by transaction (transactions, entries, lots, lot reliefs) grow at
// their right edge instead of dirtying a random leaf page per row. On
// CockroachDB it is random: ordered keys would send every insert to the
// last range.
func (db *DB) NewTransactionID() uuid.UUID {
	if db.cockroach {
		return uuid.New()
	}
	return uuid.Must(uuid.NewV7())
}

// CommitBatch posts a batch in one database transaction; see ledger.Store.
func (db *DB) CommitBatch(ctx context.Context, lane int, batch []*ledger.Pending) error {
	const op = "postgres.CommitBatch"
	plan := ledger.PlanBatch(batch, lane)
	var err error
	if db.cockroach {
		err = db.inTx(ctx, pgx.Serializable, func(tx pgx.Tx) error { return decideBatch(ctx, tx, plan, batch, true) })
	} else {
		err = db.retry(ctx, batchRetryable, func() error { return db.pipelinedBatch(ctx, plan, batch) })
	}
	if err != nil {
		return storeError(op, err)
	}
	return db.loadReplays(ctx, batch)
}

// batchRetryable adds a lost connection to what a batch re-runs for: a pooled
// connection the database dropped (a restart, a failover) fails the first
// batch that takes it. Re-running a batch whose COMMIT did land is safe, as
// every request in it is keyed: the re-run finds the keys committed and
// answers with the transactions they posted (marked replayed).
func batchRetryable(err error) bool { return retryable(err) || unreachable(err) }

// pipelinedBatch is one attempt at a batch on PostgreSQL in two round trips:
// BEGIN rides in front of the reads and COMMIT behind the writes, instead of
// a round trip each. Success means COMMIT itself answered COMMIT: a failure
// at commit (a deferred constraint, say) comes back as COMMIT's error, and a
// transaction that had already failed would answer ROLLBACK.
func (db *DB) pipelinedBatch(ctx context.Context, plan *ledger.Plan, batch []*ledger.Pending) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection left inside a transaction is closed, not reused.
	defer conn.Release()
	if err = decideBatch(ctx, conn, plan, batch, false); err != nil {
		// Even when ctx has ended; bounded, for a server that stopped answering.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, _ = conn.Exec(rctx, "ROLLBACK")
		cancel()
	}
	return err
}

// batchSender is a transaction, or a connection whose transaction is opened
// and closed by statements in the batches themselves.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// decideBatch locks and reads what the batch needs, decides it and writes
// it. On PostgreSQL the batches also open and commit the transaction.
func decideBatch(ctx context.Context, tx batchSender, plan *ledger.Plan, batch []*ledger.Pending, cockroach bool) error {
	st, err := readState(ctx, tx, plan, cockroach)
	if err != nil {
		return err
	}
	ledger.Decide(batch, st)
	return write(ctx, tx, plan, batch, st, !cockroach)
}

// readState locks and reads what plan needs; on PostgreSQL BEGIN goes in front.
func readState(ctx context.Context, tx batchSender, plan *ledger.Plan, cockroach bool) (*ledger.State, error) {
	lockIDs := make(uuidArray, len(plan.Locks))
	lockShardNos := make(int4Array, len(plan.Locks))
	for i, l := range plan.Locks {
		lockIDs[i], lockShardNos[i] = l.AccountID, int32(l.Shard)
	}
	accountIDs := make(uuidArray, len(plan.Accounts))
	perShard := map[uuid.UUID]bool{}
	for i, a := range plan.Accounts {
		accountIDs[i] = a.ID
		if a.PerShard {
			perShard[a.ID] = true
		}
	}
	st := &ledger.State{
		Lane:      plan.Lane,
		Rows:      map[ledger.ShardRef]decimal.Decimal{},
		Committed: map[string]ledger.Committed{},
		Reversed:  map[uuid.UUID]bool{},
		Status:    map[uuid.UUID]ledger.Status{},
		Balance:   map[uuid.UUID]decimal.Decimal{},
		Lots:      map[uuid.UUID][]*ledger.Lot{},
		LotsCut:   map[uuid.UUID]int{},
		Took:      map[uuid.UUID][]ledger.LotRelief{},
	}
	b := &pgx.Batch{}
	if !cockroach {
		b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
		b.Queue(keyedLookups)
	}
	locked := 0
	b.Queue(lockShards, lockIDs, lockShardNos).Query(func(rows pgx.Rows) error {
		var id uuid.UUID
		var shard int32
		var bal decimal.Decimal
		_, err := pgx.ForEachRow(rows, []any{&id, &shard, &bal}, func() error {
			locked++
			if plan.Checked[id] {
				if sum, ok := st.Balance[id]; ok {
					st.Balance[id] = sum.Add(bal)
				} else {
					st.Balance[id] = bal // most accounts have one row: no Add to allocate
				}
				if perShard[id] {
					st.Rows[ledger.ShardRef{AccountID: id, Shard: int(shard)}] = bal
				}
			}
			return nil
		})
		return err
	})
	lotsRead := map[uuid.UUID]bool{}
	// The limited read's rows come holder by holder, oldest first: how many
	// each holder had, and the newest of them.
	type oldestRead struct {
		n    int
		last uuid.UUID
	}
	oldest := map[uuid.UUID]oldestRead{}
	scanLots := func(limited bool) func(pgx.Rows) error {
		return func(rows pgx.Rows) error {
			for rows.Next() {
				l := &ledger.Lot{}
				if err := rows.Scan(&l.ID, &l.AccountID, &l.OpenedAt, &l.BatchSeq, &l.Units, &l.UnitsLeft,
					&l.ValueAccountID, &l.ValueAsset, &l.Value, &l.ValueLeft, &l.Refunded); err != nil {
					return err
				}
				if limited {
					oldest[l.AccountID] = oldestRead{oldest[l.AccountID].n + 1, l.ID}
				}
				if !lotsRead[l.ID] {
					lotsRead[l.ID] = true
					st.Lots[l.AccountID] = append(st.Lots[l.AccountID], l)
				}
			}
			return rows.Err()
		}
	}
	lotLimit := plan.LotLimit
	if cockroach {
		lotLimit = 0
	}
	switch {
	case len(plan.LotAccounts) == 0:
	case lotLimit == 0:
		b.Queue(lockOpenLots, pgUUIDs(plan.LotAccounts)).Query(scanLots(false))
	default:
		b.Queue(lockOldestLots, pgUUIDs(plan.LotAccounts), int32(lotLimit)).Query(scanLots(true))
	}
	if len(plan.LotIDs) > 0 || len(plan.Reverses) > 0 {
		b.Queue(lockLotsByID, pgUUIDs(plan.LotIDs), pgUUIDs(plan.Reverses)).Query(scanLots(false))
		b.Queue(selectTook, pgUUIDs(plan.Reverses)).Query(func(rows pgx.Rows) error {
			var r ledger.LotRelief
			var tx uuid.UUID
			_, err := pgx.ForEachRow(rows, []any{&tx, &r.LotID, &r.Units, &r.Value, &r.Refunded}, func() error {
				st.Took[tx] = append(st.Took[tx], r)
				return nil
			})
			return err
		})
	}
	b.Queue(selectClock).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&st.RecordedAt); err != nil {
			return err
		}
		st.RecordedAt = st.RecordedAt.UTC().Truncate(time.Microsecond)
		return nil
	})
	b.Queue(selectStatuses, accountIDs).Query(func(rows pgx.Rows) error {
		var id uuid.UUID
		var status string
		_, err := pgx.ForEachRow(rows, []any{&id, &status}, func() error {
			st.Status[id] = ledger.Status(status)
			return nil
		})
		return err
	})
	b.Queue(selectCommitted, textArray(plan.Keys)).Query(func(rows pgx.Rows) error {
		var key string
		var c ledger.Committed
		_, err := pgx.ForEachRow(rows, []any{&key, &c.ID, &c.Fingerprint}, func() error {
			st.Committed[key] = ledger.Committed{ID: c.ID, Fingerprint: append([]byte(nil), c.Fingerprint...)}
			return nil
		})
		return err
	})
	if len(plan.Reverses) > 0 {
		b.Queue(selectReversed, pgUUIDs(plan.Reverses)).Query(func(rows pgx.Rows) error {
			var id uuid.UUID
			_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
				st.Reversed[id] = true
				return nil
			})
			return err
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	for _, lots := range st.Lots { // two reads may interleave one holder's lots
		sort.Slice(lots, func(i, j int) bool { return ledger.LotBefore(lots[i], lots[j]) })
	}
	if lotLimit > 0 {
		// A holder with as many lots as the limit may have more, unread.
		for holder, read := range oldest {
			if read.n == lotLimit {
				st.LotsCut[holder] = slices.IndexFunc(st.Lots[holder], func(l *ledger.Lot) bool { return l.ID == read.last }) + 1
			}
		}
	}
	if locked != len(plan.Locks) {
		return nil, fmt.Errorf("locked %d balance rows, expected %d: balance rows missing", locked, len(plan.Locks))
	}
	return st, nil
}

// write inserts the accepted transactions and applies their effects; commit
// puts COMMIT behind them.
func write(ctx context.Context, tx batchSender, plan *ledger.Plan, batch []*ledger.Pending, st *ledger.State, commit bool) error {
	b := &pgx.Batch{}
	queueWrites(b, plan, batch, st)
	if commit {
		b.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
			if tag.String() != "COMMIT" {
				return fmt.Errorf("COMMIT answered %q", tag.String())
			}
			return nil
		})
	}
	if b.Len() == 0 {
		return nil
	}
	err := tx.SendBatch(ctx, b).Close()
	if sqlState(err) == "23505" {
		// A concurrent batch committed one of our keys or reversals first;
		// the re-run will see it as committed.
		return retryableConflict{err}
	}
	return err
}

// queueWrites adds the inserts of the batch's accepted transactions, their
// entries and lots, and the balance deltas.
func queueWrites(b *pgx.Batch, plan *ledger.Plan, batch []*ledger.Pending, st *ledger.State) {
	recordedAt := st.RecordedAt
	// Sized up front: appending from empty copied each column a few times
	// per batch.
	nTx, nEntries := 0, 0
	for _, pd := range batch {
		if pd.Outcome == ledger.Accepted {
			nTx++
			nEntries += len(pd.Tx.Postings)
		}
	}
	var (
		txIDs               = make(uuidArray, 0, nTx)
		revs                = make([]*uuid.UUID, 0, nTx)
		keys, kinds, metas  = make(textArray, 0, nTx), make(textArray, 0, nTx), make(textArray, 0, nTx)
		fps                 = make([][]byte, 0, nTx)
		effs                = make([]time.Time, 0, nTx)
		seqs                = make(int4Array, 0, nTx)
		eTx, eAcct          = make(uuidArray, 0, nEntries), make(uuidArray, 0, nEntries)
		eIdx, eSeq          = make(int4Array, 0, nEntries), make(int4Array, 0, nEntries)
		eAsset, eSide, eAmt = make(textArray, 0, nEntries), make(textArray, 0, nEntries), make(textArray, 0, nEntries)
	)
	for _, pd := range batch {
		if pd.Outcome != ledger.Accepted {
			continue
		}
		t := &pd.Tx
		txIDs = append(txIDs, t.ID)
		keys = append(keys, t.IdempotencyKey)
		fps = append(fps, pd.Fingerprint)
		kinds = append(kinds, t.Kind)
		effs = append(effs, t.EffectiveAt)
		seqs = append(seqs, int32(t.BatchSeq))
		metas = append(metas, string(t.Metadata))
		revs = append(revs, t.Reverses)
		for i, p := range t.Postings {
			eTx = append(eTx, t.ID)
			eIdx = append(eIdx, int32(i))
			eAcct = append(eAcct, p.AccountID)
			eAsset = append(eAsset, p.Asset)
			eSide = append(eSide, p.Side.String())
			eAmt = append(eAmt, ledger.DecimalString(p.Amount))
			eSeq = append(eSeq, int32(t.BatchSeq))
		}
	}
	if len(txIDs) == 0 {
		return
	}
	deltas := plan.Deltas(batch)
	dIDs := make(uuidArray, len(deltas))
	dShards := make(int4Array, len(deltas))
	dAmts := make(textArray, len(deltas))
	for i, d := range deltas {
		dIDs[i], dShards[i], dAmts[i] = d.AccountID, int32(d.Shard), ledger.DecimalString(d.Delta)
	}
	b.Queue(insertTransactions, txIDs, keys, fps, kinds, effs, recordedAt, seqs, metas, pgNullUUIDs(revs))
	b.Queue(insertEntries, eTx, eIdx, eAcct, eAsset, eSide, eAmt, recordedAt, eSeq)
	b.Queue(updateBalances, dIDs, dShards, dAmts)
	queueLotWrites(b, batch, st)
}

// queueLotWrites adds the batch's lot changes: lots opened (in their state
// after the batch), lots relieved, and the immutable record of each relief.
func queueLotWrites(b *pgx.Batch, batch []*ledger.Pending, st *ledger.State) {
	var (
		ids, accts, vaccts                   uuidArray
		seqs                                 int4Array
		units, unitsLeft, values, valuesLeft textArray
		vassets                              textArray
		rTx, rLot                            uuidArray
		rUnits, rValues, rRefunded           textArray
	)
	for _, pd := range batch {
		if pd.Outcome != ledger.Accepted {
			continue
		}
		if l := pd.OpenedLot; l != nil {
			ids, accts, vaccts = append(ids, l.ID), append(accts, l.AccountID), append(vaccts, l.ValueAccountID)
			seqs = append(seqs, int32(l.BatchSeq))
			units, unitsLeft = append(units, ledger.DecimalString(l.Units)), append(unitsLeft, ledger.DecimalString(l.UnitsLeft))
			values, valuesLeft = append(values, ledger.DecimalString(l.Value)), append(valuesLeft, ledger.DecimalString(l.ValueLeft))
			vassets = append(vassets, l.ValueAsset)
		}
		for _, r := range pd.Reliefs {
			rTx, rLot = append(rTx, pd.Tx.ID), append(rLot, r.LotID)
			rUnits, rValues = append(rUnits, ledger.DecimalString(r.Units)), append(rValues, ledger.DecimalString(r.Value))
			rRefunded = append(rRefunded, ledger.DecimalString(r.Refunded))
		}
	}
	if len(ids) > 0 {
		b.Queue(insertLots, ids, accts, st.RecordedAt, seqs, units, unitsLeft, vaccts, vassets, values, valuesLeft)
	}
	if updates := st.LotUpdates(); len(updates) > 0 {
		uIDs := make(uuidArray, len(updates))
		uUnits := make(textArray, len(updates))
		uValues := make(textArray, len(updates))
		uRefunded := make(textArray, len(updates))
		for i, l := range updates {
			uIDs[i], uUnits[i], uValues[i], uRefunded[i] = l.ID, ledger.DecimalString(l.UnitsLeft), ledger.DecimalString(l.ValueLeft), ledger.DecimalString(l.Refunded)
		}
		b.Queue(updateLots, uIDs, uUnits, uValues, uRefunded)
	}
	if len(rTx) > 0 {
		b.Queue(insertReliefs, rTx, rLot, rUnits, rValues, rRefunded)
	}
}

// pgUUIDs converts ids for pgx. uuid.UUID would go through driver.Valuer
// and a text round trip (a third of the batch's CPU in BenchmarkSendGift's
// profile); uuidArray is encoded in one pass (arrays.go).
func pgUUIDs(ids []uuid.UUID) uuidArray {
	out := make(uuidArray, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// pgNullUUIDs converts optional ids; nil is NULL.
func pgNullUUIDs(ids []*uuid.UUID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		if id != nil {
			out[i] = pgtype.UUID{Bytes: *id, Valid: true}
		}
	}
	return out
}
