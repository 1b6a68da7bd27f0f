package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/postgres"
)

// Many goroutines post random transfers over a few accounts, one of them hot
// and sharded. Afterwards: no may-not-go-negative account was ever negative
// in commit order, every asset sums to zero, stored balances equal their
// entries, and the final balances equal a serial replay of exactly the
// acknowledged transactions.
func TestSerializableUnderConcurrency(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{Lanes: 4, MaxBatch: 16})
		ctx := context.Background()
		accounts := map[string]*ledger.Account{"mint": e.account("mint", "USD", true, 1)}
		users := []string{"hot"}
		accounts["hot"] = e.account("hot", "USD", false, 4)
		for i := range 6 {
			name := fmt.Sprintf("user:%d", i)
			accounts[name] = e.account(name, "USD", false, 1)
			users = append(users, name)
		}
		acked := map[uuid.UUID]ledger.PostRequest{}
		for _, u := range users {
			req := transfer("fund:"+u, "mint", u, "20")
			acked[e.post(req).ID] = req
		}

		const workers, perWorker = 16, 120
		var mu sync.Mutex
		refused := 0
		sweeps := map[uuid.UUID]bool{} // acknowledged sweeps, whose amounts the commit decided
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 7))
				for i := range perWorker {
					from, to := users[rng.IntN(len(users))], users[rng.IntN(len(users))]
					if rng.IntN(3) == 0 {
						to = "hot"
					}
					if from == to {
						continue
					}
					req := transfer(fmt.Sprintf("w%d:%d", w, i), from, to, fmt.Sprintf("%d.%02d", rng.IntN(6), rng.IntN(100)+1))
					switch {
					case rng.IntN(12) == 0: // a sweep of from's whole balance, the hot account's four rows included
						req = sweep(req.IdempotencyKey, from, to)
					case rng.IntN(4) == 0: // a three-leg split
						third := users[rng.IntN(len(users))]
						req.Postings[1].Amount = req.Postings[0].Amount.Sub(decimal.RequireFromString("0.01"))
						req.Postings = append(req.Postings, ledger.PostingRequest{Account: third, Side: ledger.Credit, Amount: decimal.RequireFromString("0.01")})
						if req.Postings[1].Amount.Sign() <= 0 {
							continue
						}
					}
					for try := 0; try < 1+rng.IntN(2); try++ { // sometimes a duplicate retry
						tx, err := e.svc.Post(ctx, req)
						mu.Lock()
						switch {
						case err == nil:
							if prev, ok := acked[tx.ID]; ok && prev.IdempotencyKey != req.IdempotencyKey {
								t.Errorf("id %s reused", tx.ID)
							}
							done := req
							if req.Sweep != nil { // recorded as the transfer the commit decided
								sweeps[tx.ID] = true
								done.Sweep, done.Postings = nil, nil
								for _, p := range tx.Postings {
									done.Postings = append(done.Postings, ledger.PostingRequest{Account: p.Account, Side: p.Side, Amount: p.Amount})
								}
							}
							acked[tx.ID] = done
						case errors.Is(err, ledger.ErrInsufficientFunds), errors.Is(err, ledger.ErrNothingToSweep):
							refused++
						default:
							t.Errorf("%s: %v", req.IdempotencyKey, err)
						}
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		t.Logf("%d acknowledged (%d sweeps), %d refused", len(acked), len(sweeps), refused)
		if refused == 0 || len(acked) < 200 {
			t.Fatalf("workload too tame: %d acknowledged, %d refused", len(acked), refused)
		}
		e.verifyClean()

		// Replay the ledger in commit order.
		owner := e.owner()
		rows, _ := owner.Query(ctx, `
SELECT t.id, a.name, e.side, e.amount FROM entries e
JOIN transactions t ON t.id = e.tx_id JOIN accounts a ON a.id = e.account_id
ORDER BY t.recorded_at, t.batch_seq, t.id, e.idx`)
		replay := map[string]decimal.Decimal{}
		seen := map[uuid.UUID]bool{}
		var id uuid.UUID
		var name, side string
		var amt decimal.Decimal
		var lastTx uuid.UUID
		checkNonNegative := func() {
			for n, bal := range replay {
				if !accounts[n].AllowNegative && bal.Sign() < 0 {
					t.Fatalf("%s was %s after transaction %s in commit order", n, bal, lastTx)
				}
			}
		}
		_, err := pgx.ForEachRow(rows, []any{&id, &name, &side, &amt}, func() error {
			if id != lastTx && lastTx != uuid.Nil {
				checkNonNegative()
			}
			lastTx, seen[id] = id, true
			s, _ := ledger.ParseSide(side)
			// A sweep moves what its account held at its place in commit order.
			if sweeps[id] && s == ledger.Debit && !amt.Equal(replay[name]) {
				t.Fatalf("sweep %s moved %s out of %s, which held %s in commit order", id, amt, name, replay[name])
			}
			if s == ledger.Credit {
				replay[name] = replay[name].Add(amt)
			} else {
				replay[name] = replay[name].Sub(amt)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		checkNonNegative()
		if len(seen) != len(acked) {
			t.Fatalf("ledger holds %d transactions, %d were acknowledged", len(seen), len(acked))
		}
		// The acknowledged requests, applied serially in Go, give the same balances.
		want := map[string]decimal.Decimal{}
		for id, req := range acked {
			if !seen[id] {
				t.Fatalf("acknowledged %s (%s) is not in the ledger", id, req.IdempotencyKey)
			}
			for _, p := range req.Postings {
				if p.Side == ledger.Credit {
					want[p.Account] = want[p.Account].Add(p.Amount)
				} else {
					want[p.Account] = want[p.Account].Sub(p.Amount)
				}
			}
		}
		total := decimal.Zero
		for n := range accounts {
			got := e.balance(n)
			if !got.Equal(want[n]) || !got.Equal(replay[n]) {
				t.Errorf("%s: stored %s, replay of entries %s, replay of acknowledged %s", n, got, replay[n], want[n])
			}
			total = total.Add(got)
		}
		if !total.IsZero() {
			t.Errorf("USD sums to %s", total)
		}
	})
}

// PostgreSQL can fail a transaction at COMMIT (here a deferred constraint
// trigger raising 40001, as SSI does): the commit must be retried, never
// reported as success, and reported as Aborted when retries run out.
func TestRetriesFailureAtCommit(t *testing.T) {
	e := newEnv(t, dbtest.Postgres(), ledger.Options{})
	ctx := context.Background()
	e.account("mint", "USD", true, 1)
	e.account("alice", "USD", false, 1)
	owner := e.owner()
	_, err := owner.Exec(ctx, `
CREATE SEQUENCE commit_attempts;
GRANT USAGE ON SEQUENCE commit_attempts TO coinledger_writer;
CREATE TABLE fail_first (n INT NOT NULL);
GRANT SELECT ON fail_first TO coinledger_writer;
INSERT INTO fail_first VALUES (2);
CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('commit_attempts') <= (SELECT n FROM fail_first) THEN
    RAISE EXCEPTION 'injected serialization failure at commit' USING ERRCODE = '40001';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON transactions
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit();`)
	if err != nil {
		t.Fatal(err)
	}
	tx := e.post(transfer("t1", "mint", "alice", "1"))
	var attempts int
	if err := owner.QueryRow(ctx, "SELECT last_value FROM commit_attempts").Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != 3 {
		t.Fatalf("COMMIT ran %d times, want 3 (two injected failures, then success)", attempts)
	}
	if got, err := e.svc.Transaction(ctx, tx.ID); err != nil || got.IdempotencyKey != "t1" {
		t.Fatalf("acknowledged transaction not in the ledger: %v", err)
	}

	// With a budget of 2 attempts and 5 failures to come, the caller is told
	// Aborted and nothing is posted.
	if _, err := owner.Exec(ctx, "UPDATE fail_first SET n = n + 5"); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(ctx, e.ownerURL, postgres.Config{MaxAttempts: 2, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc := ledger.NewService(db, ledger.Options{})
	defer svc.Close()
	_, err = svc.Post(ctx, transfer("t2", "mint", "alice", "1"))
	if ledger.KindOf(err) != ledger.Aborted || !errors.Is(err, ledger.ErrRetriesExhausted) {
		t.Fatalf("exhausted retries: %v", err)
	}
	// The database's error is logged, not passed on to the caller.
	if reason := ledger.Reason(err); strings.Contains(reason, "SQLSTATE") {
		t.Errorf("a caller is told the database's error: %q", reason)
	}
	e.wantBalance("alice", "1")
}

// A batch opens its transaction with BEGIN in its first round trip and closes
// it with COMMIT in its last, on a pooled connection. One that fails in
// between (here the database refuses a row) is rolled back and its
// connection is clean for the next batch: with a pool of one connection, the
// posts after each refusal work, on the same connection.
func TestFailedBatchLeavesItsConnectionClean(t *testing.T) {
	b := dbtest.Postgres()
	e := newEnv(t, b, ledger.Options{})
	ctx := context.Background()
	e.account("mint", "USD", true, 1)
	e.account("alice", "USD", false, 1)
	_, err := e.owner().Exec(ctx, `
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.idempotency_key LIKE 'poison%' THEN
    RAISE EXCEPTION 'injected refusal';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON transactions FOR EACH ROW EXECUTE FUNCTION refuse_poison();`)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(e.ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", "one-connection")
	u.RawQuery = q.Encode()
	db, err := postgres.Open(ctx, u.String(), postgres.Config{MaxConns: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc := ledger.NewService(db, ledger.Options{})
	defer svc.Close()
	owner := e.owner()
	backends := func() (pids []int) {
		t.Helper()
		rows, err := owner.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = 'one-connection'")
		if err != nil {
			t.Fatal(err)
		}
		pids, err = pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			t.Fatal(err)
		}
		return pids
	}
	if _, err := svc.Post(ctx, transfer("warm-up", "mint", "alice", "1")); err != nil {
		t.Fatal(err)
	}
	before := backends()
	for i := range 3 {
		if _, err := svc.Post(ctx, transfer(fmt.Sprintf("poison-%d", i), "mint", "alice", "1")); ledger.KindOf(err) != ledger.Internal {
			t.Fatalf("poisoned post: %v, want an internal error", err)
		}
		if _, err := svc.Post(ctx, transfer(fmt.Sprintf("good-%d", i), "mint", "alice", "1")); err != nil {
			t.Fatalf("post after a failed batch: %v", err)
		}
	}
	// Rolled back, not thrown away: the same connection served every batch.
	if after := backends(); len(before) != 1 || !slices.Equal(before, after) {
		t.Errorf("connections before %v, after %v: a failed batch's connection was replaced", before, after)
	}
	e.wantBalance("alice", "4")
	e.verifyClean()
}

// A database that drops its connections is retried on new ones; one that
// cannot be reached is Unavailable to callers (retry), not Internal (a bug),
// and the write refused meanwhile posts once when retried with its key.
func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	e := newEnv(t, dbtest.Postgres(), ledger.Options{})
	ctx := context.Background()
	e.account("mint", "USD", true, 1)
	e.account("alice", "USD", false, 1)
	e.post(transfer("t1", "mint", "alice", "1"))
	// The database is switched off from another one: it cannot be from itself.
	u, err := url.Parse(e.ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	owner, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Close(ctx) })
	allow := func(on bool) {
		t.Helper()
		if _, err := owner.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", pgx.Identifier{dbName}.Sanitize(), on)); err != nil {
			t.Fatal(err)
		}
	}
	dropConnections := func() {
		t.Helper()
		if _, err := owner.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", dbName); err != nil {
			t.Fatal(err)
		}
	}
	// Connections cut, the database up (a restart): the batch that meets a
	// dead pooled connection is re-run on a new one.
	dropConnections()
	e.post(transfer("t1b", "mint", "alice", "1"))

	allow(false)
	t.Cleanup(func() { allow(true) })
	dropConnections()

	_, err = e.svc.Post(ctx, transfer("t2", "mint", "alice", "1"))
	if ledger.KindOf(err) != ledger.Unavailable {
		t.Errorf("post while the database refuses connections: kind %v: %v", ledger.KindOf(err), err)
	}
	if _, err := e.db.Account(ctx, "alice"); ledger.KindOf(err) != ledger.Unavailable {
		t.Errorf("read while the database refuses connections: kind %v: %v", ledger.KindOf(err), err)
	}
	if _, err := e.db.Account(ctx, "no such account"); ledger.KindOf(err) != ledger.Unavailable {
		t.Errorf("read of a missing account while the database refuses connections: kind %v: %v", ledger.KindOf(err), err)
	}

	allow(true)
	e.post(transfer("t2", "mint", "alice", "1"))
	e.post(transfer("t2", "mint", "alice", "1")) // a replay
	e.wantBalance("alice", "3")
}
