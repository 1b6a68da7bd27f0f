package postgres

import "time"

// Unreachable classifies errors as the database being out of reach.
var Unreachable = unreachable

// Statements of the write path, for plan tests.
var (
	KeyedLookups = keyedLookups
	LockLotsByID = lockLotsByID
	// Keyed statements of the write path, with an argument (a literal) for
	// each parameter.
	KeyedStatements = map[string]struct {
		SQL  string
		Args []string
	}{
		"lockShards":      {lockShards, []string{uuids, ints}},
		"selectStatuses":  {selectStatuses, []string{uuids}},
		"selectCommitted": {selectCommitted, []string{"{k1,k2}"}},
		"selectReversed":  {selectReversed, []string{uuids}},
		"lockOpenLots":    {lockOpenLots, []string{uuids}},
		"lockOldestLots":  {lockOldestLots, []string{uuids, "16"}},
		"lockLotsByID":    {lockLotsByID, []string{uuids, uuids}},
		"selectTook":      {selectTook, []string{uuids}},
		"updateLots":      {updateLots, []string{uuids, texts, texts, texts}},
		"updateBalances":  {updateBalances, []string{uuids, ints, texts}},
	}
)

const (
	uuids = "{00000000-0000-0000-0000-000000000001,00000000-0000-0000-0000-000000000002}"
	ints  = "{0,1}"
	texts = "{1,2}"
)

// SumEntriesBetween sums an account's entries in a span: from the start of
// time, the forward sum a balance as of a time used alone before it could
// sum from other anchors, for the benchmark.
var SumEntriesBetween = sumEntriesBetween

// KeepBalancesAsOf makes db keep every balance as of an instant at least
// settled ago whose sum counted at least minEntries entries.
func (db *DB) KeepBalancesAsOf(settled time.Duration, minEntries int64) {
	db.checkpointSettled, db.checkpointMinEntries = settled, minEntries
}

// KeepLease is keepLease, for a lease of the test's term.
var KeepLease = keepLease

// Running is the migration keepLease reports running.
type Running = runningMigration

func NewRunning(version string, since time.Time) *Running { return &Running{version, since} }
