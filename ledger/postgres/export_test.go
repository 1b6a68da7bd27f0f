package postgres

// Statements of the write path, for plan tests.
var (
	KeyedLookups = keyedLookups
	LockLotsByID = lockLotsByID
)
