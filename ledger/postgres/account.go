package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/coinledger/coinledger/ledger"
)

const (
	insertAsset = `INSERT INTO assets (code, scale) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING`
	selectAsset = `SELECT code, scale FROM assets WHERE code = $1`
)

// CreateAsset inserts an asset; an existing code with another scale is a conflict.
func (db *DB) CreateAsset(ctx context.Context, a ledger.Asset) (ledger.Asset, error) {
	const op = "postgres.CreateAsset"
	if _, err := db.pool.Exec(ctx, insertAsset, a.Code, a.Scale); err != nil {
		return ledger.Asset{}, storeError(op, err)
	}
	got, err := db.Asset(ctx, a.Code)
	if err != nil {
		return ledger.Asset{}, err
	}
	if got.Scale != a.Scale {
		return got, &ledger.Error{Op: op, Kind: ledger.Conflict, Field: "asset.scale", Message: "asset exists with another scale"}
	}
	return got, nil
}

// Asset reads one asset.
func (db *DB) Asset(ctx context.Context, code string) (ledger.Asset, error) {
	var a ledger.Asset
	err := db.pool.QueryRow(ctx, selectAsset, code).Scan(&a.Code, &a.Scale)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, &ledger.Error{Op: "postgres.Asset", Err: ledger.ErrAssetNotFound, Message: code}
	}
	if err != nil {
		return a, storeError("postgres.Asset", err)
	}
	return a, nil
}

const (
	accountColumns = `id, name, asset, normal_side, allow_negative, shards, per_shard, status, metadata, created_at`
	insertAccount  = `
INSERT INTO accounts (` + accountColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (name) DO NOTHING`
	insertShards         = `INSERT INTO balances (account_id, shard, balance) SELECT $1, s, 0 FROM generate_series(0, $2 - 1) AS s`
	selectAccount        = `SELECT ` + accountColumns + ` FROM accounts WHERE name = $1`
	selectAccountsByName = `SELECT ` + accountColumns + ` FROM accounts WHERE name = ANY($1)`
	// Accounts in id order, so that two status changes cannot deadlock;
	// their balance rows in the order batches lock them.
	lockAccounts  = `SELECT ` + accountColumns + ` FROM accounts WHERE name = ANY($1::text[]) ORDER BY id FOR UPDATE`
	lockAllShards = `SELECT shard FROM balances WHERE account_id = ANY($1::uuid[]) ORDER BY account_id, shard FOR UPDATE`
	updateStatus  = `UPDATE accounts SET status = $2 WHERE id = ANY($1::uuid[])`
)

func scanAccount(row pgx.Row) (*ledger.Account, error) {
	var a ledger.Account
	var normal, status string
	if err := row.Scan(&a.ID, &a.Name, &a.Asset, &normal, &a.AllowNegative, &a.Shards, &a.PerShard, &status, &a.Metadata, &a.CreatedAt); err != nil {
		return nil, err
	}
	a.Normal, _ = ledger.ParseSide(normal)
	a.Status = ledger.Status(status)
	a.CreatedAt = a.CreatedAt.UTC()
	return &a, nil
}

// CreateAccount inserts the account and its balance rows in one transaction.
func (db *DB) CreateAccount(ctx context.Context, a *ledger.Account) (*ledger.Account, error) {
	const op = "postgres.CreateAccount"
	var got *ledger.Account
	err := db.inTx(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		meta := a.Metadata
		if len(meta) == 0 {
			meta = []byte("{}")
		}
		tag, err := tx.Exec(ctx, insertAccount, a.ID, a.Name, a.Asset, a.Normal.String(), a.AllowNegative, a.Shards, a.PerShard, string(a.Status), string(meta), a.CreatedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			if _, err := tx.Exec(ctx, insertShards, a.ID, a.Shards); err != nil {
				return err
			}
		}
		got, err = scanAccount(tx.QueryRow(ctx, selectAccount, a.Name))
		return err
	})
	if sqlState(err) == "23503" {
		return nil, &ledger.Error{Op: op, Field: "asset", Err: ledger.ErrAssetNotFound}
	}
	if err != nil {
		return nil, storeError(op, err)
	}
	if got.ID != a.ID && !got.SameDefinition(a) {
		return got, &ledger.Error{Op: op, Field: "name", Err: ledger.ErrAccountExists, Message: a.Name + " has " + got.DefinitionDiff(a)}
	}
	return got, nil
}

// Account reads one account by name.
func (db *DB) Account(ctx context.Context, name string) (*ledger.Account, error) {
	a, err := scanAccount(db.pool.QueryRow(ctx, selectAccount, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &ledger.Error{Op: "postgres.Account", Err: ledger.ErrAccountNotFound, Message: name}
	}
	if err != nil {
		return nil, storeError("postgres.Account", err)
	}
	return a, nil
}

// AccountsByName reads the accounts among names in one query.
func (db *DB) AccountsByName(ctx context.Context, names []string) ([]*ledger.Account, error) {
	rows, _ := db.pool.Query(ctx, selectAccountsByName, textArray(names))
	out, err := scanAccounts(rows)
	if err != nil {
		return nil, storeError("postgres.AccountsByName", err)
	}
	return out, nil
}

// scanAccounts reads every account row and closes rows.
func scanAccounts(rows pgx.Rows) ([]*ledger.Account, error) {
	defer rows.Close()
	var out []*ledger.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// SetAccountStatus locks the accounts and every balance row of theirs
// before changing their statuses, all in one transaction: a batch posting to
// one of them either committed before, or reads the new status after taking
// its own lock, and no batch sees some of them changed and not the others.
func (db *DB) SetAccountStatus(ctx context.Context, names []string, s ledger.Status) ([]*ledger.Account, error) {
	const op = "postgres.SetAccountStatus"
	var got []*ledger.Account
	err := db.inTx(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, lockAccounts, names)
		if err != nil {
			return err
		}
		locked, err := scanAccounts(rows)
		if err != nil {
			return err
		}
		byName := make(map[string]*ledger.Account, len(locked))
		ids := make(uuidArray, 0, len(locked))
		for _, a := range locked {
			byName[a.Name] = a
			ids = append(ids, a.ID)
		}
		got = got[:0]
		for _, name := range names {
			a, ok := byName[name]
			if !ok {
				return &ledger.Error{Op: op, Field: "name", Err: ledger.ErrAccountNotFound, Message: name}
			}
			if a.Status == ledger.Closed && s != ledger.Closed {
				return &ledger.Error{Op: op, Field: "status", Err: ledger.ErrAccountClosed, Message: name + " is closed, and a closed account cannot be reopened"}
			}
			got = append(got, a)
		}
		shards, err := tx.Query(ctx, lockAllShards, ids)
		if err != nil {
			return err
		}
		shards.Close()
		if err := shards.Err(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, updateStatus, ids, string(s)); err != nil {
			return err
		}
		for _, a := range got {
			a.Status = s
		}
		return nil
	})
	if err != nil {
		return nil, storeError(op, err)
	}
	return got, nil
}
