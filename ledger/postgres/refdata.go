package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
)

var _ economy.RefStore = (*DB)(nil)

const (
	insertCoinPack = `
INSERT INTO coin_packs (pack_id, channel, effective_at, coins, prices, fee_rate, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`
	coinPackColumns = `pack_id, channel, effective_at, coins, prices, fee_rate, recorded_at`
	selectCoinPack  = `SELECT ` + coinPackColumns + ` FROM coin_packs WHERE pack_id = $1 AND channel = $2 AND effective_at = $3`
	coinPackAt      = `
SELECT ` + coinPackColumns + ` FROM coin_packs
WHERE pack_id = $1 AND channel = $2 AND effective_at <= $3
ORDER BY effective_at DESC LIMIT 1`

	insertGift  = `INSERT INTO gifts (gift_id, effective_at, coins, recorded_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`
	selectGift  = `SELECT gift_id, effective_at, coins, recorded_at FROM gifts WHERE gift_id = $1 AND effective_at = $2`
	giftAt      = `SELECT gift_id, effective_at, coins, recorded_at FROM gifts WHERE gift_id = $1 AND effective_at <= $2 ORDER BY effective_at DESC LIMIT 1`
	insertShare = `
INSERT INTO share_rules (creator, effective_at, creator_share, agency, agency_share, holding_seconds, diamond_value, diamond_currency, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`
	shareColumns = `creator, effective_at, creator_share, agency, agency_share, holding_seconds, diamond_value, diamond_currency, recorded_at`
	selectShare  = `SELECT ` + shareColumns + ` FROM share_rules WHERE creator = $1 AND effective_at = $2`
	// The creator's own rule, when one is in force, wins over the default.
	shareRuleAt = `
SELECT ` + shareColumns + ` FROM share_rules
WHERE creator IN ($1, '') AND effective_at <= $2
ORDER BY creator = '', effective_at DESC LIMIT 1`
)

func scanCoinPack(row pgx.Row) (economy.CoinPack, error) {
	var p economy.CoinPack
	var prices map[string]string
	if err := row.Scan(&p.ID, &p.Channel, &p.EffectiveAt, &p.Coins, &prices, &p.FeeRate, &p.RecordedAt); err != nil {
		return p, err
	}
	p.Prices = make(map[string]decimal.Decimal, len(prices))
	for cur, s := range prices {
		d, err := decimal.NewFromString(s)
		if err != nil {
			return p, err
		}
		p.Prices[cur] = d
	}
	p.EffectiveAt, p.RecordedAt = p.EffectiveAt.UTC(), p.RecordedAt.UTC()
	return p, nil
}

func scanGift(row pgx.Row) (economy.Gift, error) {
	var g economy.Gift
	err := row.Scan(&g.ID, &g.EffectiveAt, &g.Coins, &g.RecordedAt)
	g.EffectiveAt, g.RecordedAt = g.EffectiveAt.UTC(), g.RecordedAt.UTC()
	return g, err
}

func scanShareRule(row pgx.Row) (economy.ShareRule, error) {
	var r economy.ShareRule
	var holding int64
	err := row.Scan(&r.Creator, &r.EffectiveAt, &r.CreatorShare, &r.Agency, &r.AgencyShare, &holding, &r.DiamondValue, &r.DiamondCurrency, &r.RecordedAt)
	r.HoldingPeriod = time.Duration(holding) * time.Second
	r.EffectiveAt, r.RecordedAt = r.EffectiveAt.UTC(), r.RecordedAt.UTC()
	return r, err
}

const (
	// A key is claimed in the transaction that publishes its version, so a
	// request refused for its terms leaves the key free.
	claimCatalogKey  = `INSERT INTO catalog_keys (idempotency_key, request, effective_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	selectCatalogKey = `SELECT request, effective_at FROM catalog_keys WHERE idempotency_key = $1`
)

// addVersion publishes v, effective at, under key (none when empty): it
// claims the key, inserts the version unless its effective time is taken,
// and returns what is stored there; a stored version with other terms is a
// conflict. A key already claimed for the same request answers with the
// version it published, at the time it was published for; for another
// request it is a conflict.
func addVersion[T interface{ Same(T) bool }](ctx context.Context, db *DB, op, key, request string, v T, at time.Time,
	insert func(pgx.Tx) error, load func(tx pgx.Tx, at time.Time) (T, error)) (T, error) {
	var got T
	err := db.inTx(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		if key != "" {
			tag, err := tx.Exec(ctx, claimCatalogKey, key, request, at)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				var asked string
				var published time.Time
				if err := tx.QueryRow(ctx, selectCatalogKey, key).Scan(&asked, &published); err != nil {
					return err
				}
				if asked != request {
					return &ledger.Error{Op: op, Field: "idempotency_key", Err: ledger.ErrIdempotencyConflict}
				}
				got, err = load(tx, published)
				return err
			}
		}
		if err := insert(tx); err != nil {
			return err
		}
		var err error
		if got, err = load(tx, at); err != nil {
			return err
		}
		if !got.Same(v) {
			return &ledger.Error{Op: op, Field: "effective_at", Err: economy.ErrVersionExists}
		}
		return nil
	})
	if err != nil {
		return got, storeError(op, err)
	}
	return got, nil
}

func versionAt[T any](op string, v T, err error) (T, error) {
	if errors.Is(err, pgx.ErrNoRows) {
		return v, &ledger.Error{Op: op, Err: economy.ErrNotInForce}
	}
	if err != nil {
		return v, storeError(op, err)
	}
	return v, nil
}

// AddCoinPack stores a version of a coin pack.
func (db *DB) AddCoinPack(ctx context.Context, p economy.CoinPack, request string) (economy.CoinPack, error) {
	prices := make(map[string]string, len(p.Prices))
	for cur, d := range p.Prices {
		prices[cur] = d.String()
	}
	doc, _ := json.Marshal(prices)
	return addVersion(ctx, db, "postgres.AddCoinPack", p.Key, request, p, p.EffectiveAt,
		func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, insertCoinPack, p.ID, string(p.Channel), p.EffectiveAt, p.Coins, string(doc), p.FeeRate, p.RecordedAt)
			return err
		},
		func(tx pgx.Tx, at time.Time) (economy.CoinPack, error) {
			return scanCoinPack(tx.QueryRow(ctx, selectCoinPack, p.ID, string(p.Channel), at))
		})
}

// CatalogRequest returns the request a catalog key was claimed for, "" when
// it is not claimed.
func (db *DB) CatalogRequest(ctx context.Context, key string) (string, error) {
	var request string
	err := db.pool.QueryRow(ctx, selectCatalogKey, key).Scan(&request, nil)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", storeError("postgres.CatalogRequest", err)
	}
	return request, nil
}

// CoinPackAt returns the version of a pack in force at an instant.
func (db *DB) CoinPackAt(ctx context.Context, id string, ch economy.Channel, at time.Time) (economy.CoinPack, error) {
	p, err := scanCoinPack(db.pool.QueryRow(ctx, coinPackAt, id, string(ch), at))
	return versionAt("postgres.CoinPackAt", p, err)
}

// AddGift stores a version of a gift's price.
func (db *DB) AddGift(ctx context.Context, g economy.Gift, request string) (economy.Gift, error) {
	return addVersion(ctx, db, "postgres.AddGift", g.Key, request, g, g.EffectiveAt,
		func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, insertGift, g.ID, g.EffectiveAt, g.Coins, g.RecordedAt)
			return err
		},
		func(tx pgx.Tx, at time.Time) (economy.Gift, error) {
			return scanGift(tx.QueryRow(ctx, selectGift, g.ID, at))
		})
}

// GiftAt returns the version of a gift in force at an instant.
func (db *DB) GiftAt(ctx context.Context, id string, at time.Time) (economy.Gift, error) {
	g, err := scanGift(db.pool.QueryRow(ctx, giftAt, id, at))
	return versionAt("postgres.GiftAt", g, err)
}

// AddShareRule stores a version of a revenue-share rule.
func (db *DB) AddShareRule(ctx context.Context, r economy.ShareRule, request string) (economy.ShareRule, error) {
	return addVersion(ctx, db, "postgres.AddShareRule", r.Key, request, r, r.EffectiveAt,
		func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, insertShare, r.Creator, r.EffectiveAt, r.CreatorShare, r.Agency, r.AgencyShare,
				int64(r.HoldingPeriod/time.Second), r.DiamondValue, r.DiamondCurrency, r.RecordedAt)
			return err
		},
		func(tx pgx.Tx, at time.Time) (economy.ShareRule, error) {
			return scanShareRule(tx.QueryRow(ctx, selectShare, r.Creator, at))
		})
}

// ShareRuleAt returns the rule in force for a creator at an instant.
func (db *DB) ShareRuleAt(ctx context.Context, creator string, at time.Time) (economy.ShareRule, error) {
	r, err := scanShareRule(db.pool.QueryRow(ctx, shareRuleAt, creator, at))
	return versionAt("postgres.ShareRuleAt", r, err)
}

const (
	insertLiveSession = `
INSERT INTO live_sessions (session_id, seller, partner, platform_rate, partner_share, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`
	selectLiveSession = `SELECT session_id, seller, partner, platform_rate, partner_share, recorded_at FROM live_sessions WHERE session_id = $1`
)

func scanLiveSession(row pgx.Row) (economy.LiveSession, error) {
	var s economy.LiveSession
	err := row.Scan(&s.ID, &s.Seller, &s.Partner, &s.PlatformRate, &s.PartnerShare, &s.RecordedAt)
	s.RecordedAt = s.RecordedAt.UTC()
	return s, err
}

// AddLiveSession stores a session's terms once.
func (db *DB) AddLiveSession(ctx context.Context, s economy.LiveSession) (economy.LiveSession, error) {
	got, err := addVersion(ctx, db, "postgres.AddLiveSession", "", "", s, time.Time{},
		func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, insertLiveSession, s.ID, s.Seller, s.Partner, s.PlatformRate, s.PartnerShare, s.RecordedAt)
			return err
		},
		func(tx pgx.Tx, _ time.Time) (economy.LiveSession, error) {
			return scanLiveSession(tx.QueryRow(ctx, selectLiveSession, s.ID))
		})
	var le *ledger.Error
	if errors.As(err, &le) && errors.Is(err, economy.ErrVersionExists) {
		le.Field = "session_id" // a session has one version
	}
	return got, err
}

// LiveSession reads a session's terms.
func (db *DB) LiveSession(ctx context.Context, id string) (economy.LiveSession, error) {
	s, err := scanLiveSession(db.pool.QueryRow(ctx, selectLiveSession, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return s, &ledger.Error{Op: "postgres.LiveSession", Err: economy.ErrLiveSessionNotFound}
	}
	if err != nil {
		return s, storeError("postgres.LiveSession", err)
	}
	return s, nil
}

const (
	insertCreator = `INSERT INTO creators (id, registered_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`
	selectCreator = `SELECT EXISTS (SELECT 1 FROM creators WHERE id = $1)`
)

// RegisterCreator records a creator once.
func (db *DB) RegisterCreator(ctx context.Context, id string, at time.Time) error {
	if _, err := db.pool.Exec(ctx, insertCreator, id, at); err != nil {
		return storeError("postgres.RegisterCreator", err)
	}
	return nil
}

// CreatorRegistered reports whether a creator was registered.
func (db *DB) CreatorRegistered(ctx context.Context, id string) (bool, error) {
	var ok bool
	if err := db.pool.QueryRow(ctx, selectCreator, id).Scan(&ok); err != nil {
		return false, storeError("postgres.CreatorRegistered", err)
	}
	return ok, nil
}

const (
	claimAdminKey  = `INSERT INTO admin_keys (idempotency_key, request) VALUES ($1, $2) ON CONFLICT DO NOTHING`
	selectAdminKey = `SELECT request, done FROM admin_keys WHERE idempotency_key = $1`
	finishAdminKey = `UPDATE admin_keys SET done = true WHERE idempotency_key = $1`
)

// ClaimAdminKey claims key for request unless it is claimed, and returns the
// request it is claimed for and whether that is done.
func (db *DB) ClaimAdminKey(ctx context.Context, key, request string) (string, bool, error) {
	const op = "postgres.ClaimAdminKey"
	if _, err := db.pool.Exec(ctx, claimAdminKey, key, request); err != nil {
		return "", false, storeError(op, err)
	}
	var claimed string
	var done bool
	if err := db.pool.QueryRow(ctx, selectAdminKey, key).Scan(&claimed, &done); err != nil {
		return "", false, storeError(op, err)
	}
	return claimed, done, nil
}

// FinishAdminKey marks a claimed admin key done.
func (db *DB) FinishAdminKey(ctx context.Context, key string) error {
	if _, err := db.pool.Exec(ctx, finishAdminKey, key); err != nil {
		return storeError("postgres.FinishAdminKey", err)
	}
	return nil
}
