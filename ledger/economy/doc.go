// Package economy is the coin economy built on the ledger: the reference data
// (coin packs, gift catalog, revenue-share rules) and the chart of accounts.
// Like ledger, it imports no database driver; its store lives in
// ledger/postgres.
package economy
