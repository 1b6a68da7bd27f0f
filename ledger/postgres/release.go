package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/coinledger/coinledger/ledger/economy"
)

const (
	insertPendingDay = `INSERT INTO pending_days (day, account) VALUES ($1, $2) ON CONFLICT DO NOTHING`
	// Keyset pages in (day, account) order over the days after closed up to
	// through.
	selectPendingDays = `
SELECT day, account FROM pending_days
WHERE day > $1 AND day <= $2 AND (day, account) > ($3, $4)
ORDER BY day, account LIMIT $5`
	selectReleaseClosedThrough = `SELECT closed_through FROM release_progress WHERE id = 1`
	// Only forward, and only from the day the run started from: a run that
	// finds it moved by another leaves it, and a later run closes further.
	advanceReleaseClosedThrough = `UPDATE release_progress SET closed_through = $2 WHERE id = 1 AND closed_through = $1 AND $2 > $1`
)

// NotePendingAccount records a pending account under its release day.
func (db *DB) NotePendingAccount(ctx context.Context, day, account string) error {
	if _, err := db.pool.Exec(ctx, insertPendingDay, day, account); err != nil {
		return storeError("postgres.NotePendingAccount", err)
	}
	return nil
}

// PendingAccounts pages through the pending accounts of the days after
// closed up to through, in (day, account) order, starting after after.
func (db *DB) PendingAccounts(ctx context.Context, closed, through string, after economy.PendingAccount, limit int) ([]economy.PendingAccount, error) {
	rows, _ := db.pool.Query(ctx, selectPendingDays, closed, through, after.Day, after.Account, limit)
	page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (economy.PendingAccount, error) {
		var p economy.PendingAccount
		return p, r.Scan(&p.Day, &p.Account)
	})
	if err != nil {
		return nil, storeError("postgres.PendingAccounts", err)
	}
	return page, nil
}

// ReleaseClosedThrough returns the last closed release day ("" for none).
func (db *DB) ReleaseClosedThrough(ctx context.Context) (string, error) {
	var day string
	if err := db.pool.QueryRow(ctx, selectReleaseClosedThrough).Scan(&day); err != nil {
		return "", storeError("postgres.ReleaseClosedThrough", err)
	}
	return day, nil
}

// CloseReleaseDays moves the last closed release day from from to to, when
// it is still from and to is later.
func (db *DB) CloseReleaseDays(ctx context.Context, from, to string) error {
	if _, err := db.pool.Exec(ctx, advanceReleaseClosedThrough, from, to); err != nil {
		return storeError("postgres.CloseReleaseDays", err)
	}
	return nil
}
