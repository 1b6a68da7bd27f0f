package economy

import (
	"context"

	"github.com/coinledger/coinledger/ledger"
)

// CheckReleaseClosed names the economy's check that no pending account of a
// release day the release job has closed holds diamonds. Nothing reaches a
// closed day but a refund reversal, which releases what it returns at once,
// so diamonds there would never be released: creators' earnings stuck.
const CheckReleaseClosed = "release-closed"

// Verify checks the economy's invariants beyond the ledger's own
// (ledger.Service.Verify), listing at most ledger.MaxViolationsPerCheck
// violations and counting the rest. It reads every pending account of the
// closed days, a page at a time; progress, if not nil, is told how many it
// has read after each page.
func (e *Economy) Verify(ctx context.Context, progress func(read int)) (violations []ledger.Violation, omitted int64, err error) {
	store := e.catalog.store
	closed, err := store.ReleaseClosedThrough(ctx)
	if err != nil || closed == "" {
		return nil, 0, err
	}
	var after PendingAccount
	for read := 0; ; {
		page, err := store.PendingAccounts(ctx, "", closed, after, pendingPage)
		if err != nil || len(page) == 0 {
			return violations, omitted, err
		}
		after, read = page[len(page)-1], read+len(page)
		accounts, held, err := e.pendingHeld(ctx, page)
		if err != nil {
			return nil, 0, err
		}
		for i, a := range accounts {
			if held[i].Sign() == 0 {
				continue
			}
			if len(violations) == ledger.MaxViolationsPerCheck {
				omitted++
				continue
			}
			violations = append(violations, ledger.Violation{Check: CheckReleaseClosed, Subject: a.Name,
				Detail: "holds " + held[i].String() + " DIAMOND, but its release day is closed (through " + closed + ")"})
		}
		if progress != nil {
			progress(read)
		}
	}
}
