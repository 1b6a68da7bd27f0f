package postgres_test

import (
	"testing"
	"time"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
)

var zeroTime time.Time

func TestSmoke(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		e.account("platform:mint", "USD", true, 1)
		e.account("user:1", "USD", false, 1)
		e.post(transfer("k1", "platform:mint", "user:1", "10.50"))
		if got := e.balance("user:1").String(); got != "10.5" {
			t.Fatalf("balance %s", got)
		}
		e.verifyClean()
	})
}
