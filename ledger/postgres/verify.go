package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/coinledger/coinledger/ledger"
)

// Each check returns (subject, detail) rows, one per violation.
var verifyChecks = []struct{ check, query string }{
	{ledger.CheckTrialBalance, `
SELECT asset, 'debits ' || SUM(CASE WHEN side = 'debit' THEN amount ELSE 0 END)::text
           || ' != credits ' || SUM(CASE WHEN side = 'credit' THEN amount ELSE 0 END)::text
FROM entries GROUP BY asset
HAVING SUM(CASE WHEN side = 'debit' THEN amount ELSE -amount END) <> 0
ORDER BY asset`},
	{ledger.CheckTxBalanced, `
SELECT tx_id::text, asset || ' is off by ' || SUM(CASE WHEN side = 'debit' THEN amount ELSE -amount END)::text
FROM entries GROUP BY tx_id, asset
HAVING SUM(CASE WHEN side = 'debit' THEN amount ELSE -amount END) <> 0
ORDER BY tx_id`},
	{ledger.CheckOrphanEntry, `
SELECT e.tx_id::text, 'entry ' || e.idx::text || ' belongs to no transaction'
FROM entries e LEFT JOIN transactions t ON t.id = e.tx_id
WHERE t.id IS NULL
ORDER BY e.tx_id, e.idx`},
	{ledger.CheckTxPostings, `
SELECT t.id::text, 'has ' || COUNT(e.tx_id)::text || ' postings, needs at least 2'
FROM transactions t LEFT JOIN entries e ON e.tx_id = t.id
GROUP BY t.id HAVING COUNT(e.tx_id) < 2
ORDER BY t.id`},
	{ledger.CheckEntryAsset, `
SELECT e.tx_id::text, 'posting ' || e.idx::text || ' in ' || e.asset || ' to ' ||
       COALESCE(a.name || ', an account in ' || a.asset, 'unknown account ' || e.account_id::text)
FROM entries e LEFT JOIN accounts a ON a.id = e.account_id
WHERE a.id IS NULL OR e.asset <> a.asset
ORDER BY e.tx_id, e.idx`},
	{ledger.CheckStored, `
WITH stored AS (SELECT account_id, SUM(balance) AS balance FROM balances GROUP BY account_id),
     posted AS (
       SELECT e.account_id, SUM(CASE WHEN e.side = a.normal_side THEN e.amount ELSE -e.amount END) AS balance
       FROM entries e JOIN accounts a ON a.id = e.account_id GROUP BY e.account_id)
SELECT a.name, 'stored ' || COALESCE(s.balance, 0)::text || ' != entries ' || COALESCE(p.balance, 0)::text
FROM accounts a LEFT JOIN stored s ON s.account_id = a.id LEFT JOIN posted p ON p.account_id = a.id
WHERE COALESCE(s.balance, 0) <> COALESCE(p.balance, 0)
ORDER BY a.name`},
	{ledger.CheckLotUnits, `
WITH open AS (SELECT account_id, SUM(units_left) AS left_ FROM lots GROUP BY account_id),
     bal AS (SELECT account_id, SUM(balance) AS balance FROM balances GROUP BY account_id)
SELECT a.name, 'lots hold ' || o.left_::text || ' units, the account ' || b.balance::text
FROM open o JOIN bal b ON b.account_id = o.account_id JOIN accounts a ON a.id = o.account_id
WHERE o.left_ <> b.balance
ORDER BY a.name`},
	{ledger.CheckLotValue, `
WITH open AS (SELECT value_account_id AS account_id, SUM(value_left) AS left_ FROM lots GROUP BY value_account_id),
     bal AS (SELECT account_id, SUM(balance) AS balance FROM balances GROUP BY account_id)
SELECT a.name, 'lots carry ' || o.left_::text || ', the account holds ' || b.balance::text
FROM open o JOIN bal b ON b.account_id = o.account_id JOIN accounts a ON a.id = o.account_id
WHERE o.left_ <> b.balance
ORDER BY a.name`},
	{ledger.CheckLotRelief, `
WITH r AS (SELECT lot_id, SUM(units) AS units, SUM(value) AS value, SUM(refunded) AS refunded FROM lot_reliefs GROUP BY lot_id)
SELECT l.id::text, 'relieved ' || COALESCE(r.units, 0)::text || ' units and ' || COALESCE(r.value, 0)::text ||
       ' and refunded ' || COALESCE(r.refunded, 0)::text || ', the lot shows ' || (l.units - l.units_left)::text ||
       ', ' || (l.value - l.value_left)::text || ' and ' || l.refunded::text
FROM lots l LEFT JOIN r ON r.lot_id = l.id
WHERE l.units - l.units_left <> COALESCE(r.units, 0) OR l.value - l.value_left <> COALESCE(r.value, 0)
   OR l.refunded <> COALESCE(r.refunded, 0)
ORDER BY l.id`},
	{ledger.CheckOrphanRelief, `
SELECT r.tx_id::text, 'relieves lot ' || r.lot_id::text ||
       CASE WHEN t.id IS NULL THEN ' but belongs to no transaction' ELSE ', which does not exist' END
FROM lot_reliefs r LEFT JOIN transactions t ON t.id = r.tx_id LEFT JOIN lots l ON l.id = r.lot_id
WHERE t.id IS NULL OR l.id IS NULL
ORDER BY r.tx_id, r.lot_id`},
	// Each checkpoint against the entries since the one before it, summed
	// in order, so a wrong one is reported and not the ones after it.
	{ledger.CheckCheckpoint, `
WITH cp AS (
  SELECT c.account_id, c.as_of, c.balance, a.name, a.normal_side,
         lag(c.as_of) OVER (PARTITION BY c.account_id ORDER BY c.as_of) AS prev_at
  FROM balance_checkpoints c JOIN accounts a ON a.id = c.account_id),
summed AS (
  SELECT cp.name, cp.as_of, cp.balance, SUM(s.moved) OVER (PARTITION BY cp.account_id ORDER BY cp.as_of) AS posted
  FROM cp CROSS JOIN LATERAL (
    SELECT COALESCE(SUM(CASE WHEN e.side = cp.normal_side THEN e.amount ELSE -e.amount END), 0) AS moved
    FROM entries e
    WHERE e.account_id = cp.account_id AND e.recorded_at <= cp.as_of
      AND (cp.prev_at IS NULL OR e.recorded_at > cp.prev_at)) AS s)
SELECT name, 'balance as of ' || as_of::text || ' kept as ' || balance::text || ', its entries sum to ' || posted::text
FROM summed WHERE balance <> posted
ORDER BY name, as_of`},
	{ledger.CheckNegative, `
SELECT a.name, 'may not go negative, is ' || SUM(b.balance)::text || ' ' || a.asset
FROM accounts a JOIN balances b ON b.account_id = a.id
WHERE NOT a.allow_negative
GROUP BY a.id, a.name, a.asset HAVING SUM(b.balance) < 0
ORDER BY a.name`},
}

const verifyCounts = `
SELECT (SELECT COUNT(*) FROM assets), (SELECT COUNT(*) FROM accounts),
       (SELECT COUNT(*) FROM transactions), (SELECT COUNT(*) FROM entries)`

// Verify runs every check over one REPEATABLE READ snapshot.
func (db *DB) Verify(ctx context.Context, progress func(check string, n, of int)) (*ledger.Report, error) {
	r := &ledger.Report{}
	err := db.inTx(ctx, pgx.RepeatableRead, func(tx pgx.Tx) error {
		*r = ledger.Report{}
		if err := tx.QueryRow(ctx, verifyCounts).Scan(&r.Assets, &r.Accounts, &r.Transactions, &r.Entries); err != nil {
			return err
		}
		for i, c := range verifyChecks {
			if progress != nil {
				progress(c.check, i+1, len(verifyChecks))
			}
			rows, _ := tx.Query(ctx, c.query)
			var v ledger.Violation
			v.Check = c.check
			found := 0
			_, err := pgx.ForEachRow(rows, []any{&v.Subject, &v.Detail}, func() error {
				if found++; found > ledger.MaxViolationsPerCheck {
					r.Omitted++
				} else {
					r.Violations = append(r.Violations, v)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, storeError("postgres.Verify", err)
	}
	return r, nil
}
