package ledger

import (
	"fmt"
	"io"
)

// Verification checks, named in reports.
const (
	CheckTrialBalance = "trial-balance"       // per asset, debits equal credits
	CheckTxBalanced   = "transaction-balance" // every transaction balances per asset
	CheckTxPostings   = "transaction-postings"
	CheckOrphanEntry  = "orphan-entry"   // an entry whose transaction does not exist
	CheckEntryAsset   = "entry-asset"    // an entry's asset is its account's
	CheckStored       = "stored-balance" // stored balance equals the sum of entries
	CheckNegative     = "negative-balance"
	// An account holding FIFO lots moves only through them: its balance equals
	// its lots' units left, and a value account's balance the value they carry.
	CheckLotUnits     = "lot-units"
	CheckLotValue     = "lot-value"
	CheckLotRelief    = "lot-relief"    // each lot's consumption equals its recorded reliefs
	CheckOrphanRelief = "orphan-relief" // a relief whose transaction or lot does not exist
	// A kept balance as of an instant equals the sum of the entries up to it.
	CheckCheckpoint = "balance-checkpoint"
)

// Violation is one broken invariant.
type Violation struct {
	Check   string
	Subject string // an asset, transaction id or account name
	Detail  string
}

// Report is the outcome of a full verification of the ledger, read from one
// consistent snapshot.
type Report struct {
	Assets       int
	Accounts     int
	Transactions int64
	Entries      int64
	// Violations lists the first MaxViolationsPerCheck of each check, and
	// Omitted counts the rest: a ledger broken everywhere would otherwise
	// give a report too big to hold or to send.
	Violations []Violation
	Omitted    int64
}

// MaxViolationsPerCheck bounds how many violations of one check a report
// lists.
const MaxViolationsPerCheck = 100

// Clean reports whether no invariant is broken.
func (r *Report) Clean() bool { return len(r.Violations) == 0 && r.Omitted == 0 }

// WriteTo prints the report for people.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	n, err := fmt.Fprintf(w, "verified %d assets, %d accounts, %d transactions, %d entries\n",
		r.Assets, r.Accounts, r.Transactions, r.Entries)
	total := int64(n)
	if err != nil {
		return total, err
	}
	if r.Clean() {
		n, err = fmt.Fprintln(w, "OK: trial balance, transaction balance, stored and kept balances, balance policies and FIFO lots all hold")
		return total + int64(n), err
	}
	n, err = fmt.Fprintf(w, "FAILED: %d violations\n", int64(len(r.Violations))+r.Omitted)
	total += int64(n)
	if r.Omitted > 0 && err == nil {
		n, err = fmt.Fprintf(w, "  (the first %d of each check; %d more not listed)\n", MaxViolationsPerCheck, r.Omitted)
		total += int64(n)
	}
	for _, v := range r.Violations {
		if err != nil {
			break
		}
		n, err = fmt.Fprintf(w, "  %-20s %s: %s\n", v.Check, v.Subject, v.Detail)
		total += int64(n)
	}
	return total, err
}
