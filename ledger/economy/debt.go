package economy

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
)

// CoinDebt holds the coins a user owes: spent coins of a purchase refunded
// under the OweCoins policy. It is debit-normal and never negative; a user's
// coin position is their wallets less their debt.
func CoinDebt(user string) string { return "COIN:debt:" + user }

func coinDebtAccount(user string) ledger.Account {
	return ledger.Account{Name: CoinDebt(user), Asset: Coin, Normal: ledger.Debit}
}

// ErrInDebt refuses a gift from a viewer who owes coins.
var ErrInDebt = &ledger.Error{Kind: ledger.FailedPrecondition, Message: "viewer owes coins from a refund; gifting resumes once a purchase repays them"}

// ErrSettlementRaced answers an operation that committed but whose
// settlement of the user's debt was raced on every attempt: the operation's
// retry (same key) settles again, and so does the user's next gift.
var ErrSettlementRaced = &ledger.Error{Kind: ledger.Aborted,
	Message: "recorded, but the user's debt kept changing while it was being repaid; retry with the same key to finish"}

// debtSettleKind is the transaction that repays a debt from paid coins;
// debtSettleReversalKind undoes one, for a refund reversal.
const (
	debtSettleKind         = "debt-settle"
	debtSettleReversalKind = "debt-settle-reversal"
)

// ErrRepaidFromRefunded refuses a refund reversal whose debt was repaid with
// coins of a purchase refunded since: that settlement cannot be undone
// while its coins' lot is refunded.
var ErrRepaidFromRefunded = &ledger.Error{Kind: ledger.FailedPrecondition,
	Message: "the debt this refund added was repaid with coins of a purchase refunded since; reverse that refund first, then retry with the same refund_id"}

// settleReliefLegs move the deferred revenue of coins that repay a debt into
// refund loss, which their refund had charged with the spent coins' value:
// the loss shrinks by what is recovered.
var settleReliefLegs = func() map[string]ledger.ReliefLeg {
	legs := map[string]ledger.ReliefLeg{}
	for _, c := range Currencies {
		legs[c.Code] = ledger.ReliefLeg{From: FiatAccount(DeferredRevenue, c.Code), To: FiatAccount(RefundLoss, c.Code)}
	}
	return legs
}()

func refundLossAccount(currency string) ledger.Account {
	return ledger.Account{Name: FiatAccount(RefundLoss, currency), Asset: currency, Normal: ledger.Debit, AllowNegative: true}
}

const maxSettleAttempts = 5

// settleDebt repays what user owes from their paid coins, oldest lots first,
// as far as they reach. It is its own transaction, posted right after the
// purchase, refund or gift reversal that calls it (cause, that operation's
// key) and again by any retry of it; until it posts, the debt refuses gifts,
// so no coin that should repay it can be spent. Each settlement expects the
// debt it read, so two never repay the same coins, and a retry finds
// nothing left to repay. So each has a key of its own: a key derived from
// the debt and the wallet, as it first was, took a settlement made again
// from the same state, after a refund reversal undid the first, for a
// replay of that one, and left the debt unpaid beside the coins to pay it.
func (e *Economy) settleDebt(ctx context.Context, user, cause string) error {
	if err := e.open(ctx, coinDebtAccount(user)); err != nil {
		return err
	}
	for _, c := range Currencies {
		if err := e.open(ctx, refundLossAccount(c.Code)); err != nil {
			return err
		}
	}
	for attempt := 1; ; attempt++ {
		debt, err := e.ledger.Balance(ctx, CoinDebt(user), time.Time{})
		if err != nil || debt.Sign() == 0 {
			return err
		}
		wallet, err := e.ledger.Balance(ctx, CoinWallet(user), time.Time{})
		if err != nil {
			return err
		}
		repay := decimal.Min(debt, wallet)
		if repay.Sign() <= 0 {
			return nil
		}
		meta, _ := json.Marshal(map[string]string{"user": user, "cause": cause})
		_, err = e.ledger.Post(ctx, ledger.PostRequest{
			IdempotencyKey: debtSettleKind + ":" + user + ":" + uuid.NewString(),
			Kind:           debtSettleKind,
			Metadata:       meta,
			Postings: []ledger.PostingRequest{
				{Account: CoinWallet(user), Side: ledger.Debit, Amount: repay},
				{Account: CoinDebt(user), Side: ledger.Credit, Amount: repay},
			},
			Relieve: &ledger.Relief{Account: CoinWallet(user), Units: repay, Legs: settleReliefLegs},
			Expect:  []ledger.Expectation{{Account: CoinDebt(user), Balance: debt}},
			// Repaying a debt is no spending: it goes on while the viewer is blocked.
			PastFrozen: true,
		})
		moved := errors.Is(err, ledger.ErrUnexpectedBalance) || errors.Is(err, ledger.ErrInsufficientFunds)
		if !moved {
			return err
		}
		if attempt == maxSettleAttempts {
			return ErrSettlementRaced
		}
		// A gift, purchase or refund moved the wallet or the debt: read again.
	}
}

// unsettle reverses the newest settlements of user's debt until the debt is
// at least owed, so that a refund reversal can take back the debt it added
// exactly: the coins that repaid it return to the wallet and to their lots,
// and their value back from refund loss into deferred revenue.
//
// A settlement that repaid the debt with coins of a purchase refunded since
// cannot be undone. When the only such purchase is own (its key; "": none),
// the refund being reversed, it is passed over, and unsettle reports whether
// the debt is still short for want of it: the refund's lot must be restored
// first. Any other is refused with ErrRepaidFromRefunded: restoring the
// refund's own lot would not let it be undone.
func (e *Economy) unsettle(ctx context.Context, user string, owed decimal.Decimal, own string) (short bool, err error) {
	debt, err := e.ledger.Balance(ctx, CoinDebt(user), time.Time{})
	if err != nil || !debt.LessThan(owed) {
		return false, err
	}
	settles, err := e.settlementsOf(ctx, user)
	if err != nil {
		return false, err
	}
	var ownLot uuid.UUID // read when first needed; a purchase's lot has its id
	passed := false
	for i := len(settles) - 1; i >= 0 && debt.LessThan(owed); i-- {
		s, err := e.ledger.Transaction(ctx, settles[i])
		if err != nil {
			return false, err
		}
		var postings []ledger.PostingRequest
		for _, p := range s.Postings {
			postings = append(postings, mirror(p))
		}
		id := s.ID
		_, err = e.ledger.Post(ctx, ledger.PostRequest{
			IdempotencyKey: debtSettleReversalKind + ":" + id.String(),
			Kind:           debtSettleReversalKind,
			Metadata:       s.Metadata,
			Postings:       postings,
			Reverses:       &id,
			PastFrozen:     true, // undoing a repayment, for a refund reversal
		})
		var refused *ledger.LotRefundedError
		if errors.As(err, &refused) {
			if ownLot == uuid.Nil && own != "" {
				bought, err := e.ledger.TransactionByKey(ctx, own)
				if err != nil {
					return false, err
				}
				ownLot = bought.ID
			}
			others := slices.DeleteFunc(slices.Clone(refused.Lots), func(lot uuid.UUID) bool { return lot == ownLot })
			if len(others) == 0 {
				passed = true
				continue
			}
			// Come this far because a settlement made since the list was
			// read repaid the debt again: a newer one to undo first.
			if now, err := e.settlementsOf(ctx, user); err != nil || len(now) > len(settles) {
				return false, cmp.Or(err, errRepaidMeanwhile)
			}
			return false, &ledger.Error{Op: "economy.ReverseRefund", Field: "refund_id", Err: ErrRepaidFromRefunded,
				Message: "settlement " + id.String() + e.refundedSince(ctx, others[0])}
		}
		if err != nil && !errors.Is(err, ledger.ErrAlreadyReversed) {
			return false, err
		}
		// Read, not added up: a reversal another refund reversal made
		// first answers as a replay and restored nothing now, and
		// settlements may have come and gone meanwhile.
		if debt, err = e.ledger.Balance(ctx, CoinDebt(user), time.Time{}); err != nil {
			return false, err
		}
	}
	return passed && debt.LessThan(owed), nil
}

// errRepaidMeanwhile: a settlement made while unsettle ran repaid the debt
// again; list the settlements again.
var errRepaidMeanwhile = errors.New("the debt was repaid again meanwhile")

// refundedSince names the purchase whose lot refused and its refunds not
// reversed: the ones to reverse first. It says nothing when they cannot be
// read; the refusal stands without the names.
func (e *Economy) refundedSince(ctx context.Context, lot uuid.UUID) string {
	moves, err := e.ledger.LotMoves(ctx, lot)
	if err != nil {
		return ""
	}
	standing, err := e.standingRefunds(ctx, moves)
	if err != nil || len(standing) == 0 {
		return ""
	}
	ids := make([]string, len(standing))
	for i, p := range standing {
		ids[i] = p.RefundID
	}
	p := standing[0]
	return " drew on " + string(p.Channel) + " purchase " + p.StoreTransactionID + ", refunded by " + strings.Join(ids, ", ")
}

// settlementsOf lists the settlements of user's debt, oldest first.
func (e *Economy) settlementsOf(ctx context.Context, user string) ([]uuid.UUID, error) {
	var settles []uuid.UUID
	var after ledger.Cursor
	for {
		page, err := e.ledger.Entries(ctx, CoinDebt(user), after, time.Time{}, ledger.MaxPage)
		if err != nil {
			return nil, err
		}
		for _, en := range page {
			if en.Kind == debtSettleKind {
				settles = append(settles, en.TxID)
			}
		}
		if len(page) < ledger.MaxPage {
			return settles, nil
		}
		after = page[len(page)-1].After()
	}
}
