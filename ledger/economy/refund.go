package economy

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
)

// RefundPolicy says what happens to coins already spent when their purchase
// is refunded.
type RefundPolicy string

const (
	// ClawbackThenLoss takes back the diamonds those coins earned while they
	// are still pending; what cannot be recovered is refund loss.
	ClawbackThenLoss RefundPolicy = "clawback"
	// AbsorbLoss books all of the spent coins' value as refund loss.
	AbsorbLoss RefundPolicy = "loss"
	// OweCoins charges the spent coins to the user: paid coins in their wallet
	// repay them at once, the rest is a debt (CoinDebt) that refuses gifts
	// until later purchases repay it. Their value is refund loss until repaid,
	// and each repayment recovers the value of the coins that repay it.
	OweCoins RefundPolicy = "debt"
)

// RefundLoss is the expense account of what refunds cost the platform.
const RefundLoss = "Expense:RefundLoss"

// RefundRequest is a store's refund: Apple REFUND, a Google voided purchase
// (Coins is the voided part, or 0 for all that is left), a web refund or
// dispute.
type RefundRequest struct {
	Channel            Channel
	StoreTransactionID string // of the purchase
	RefundID           string // the store's refund id: the idempotency key
	Coins              int64  // 0: every coin of the purchase not yet refunded
	RefundedAt         time.Time
}

// Errors particular to refunds.
var (
	ErrPurchaseNotFound = &ledger.Error{Kind: ledger.NotFound, Message: "no such purchase"}
	ErrBeyondPurchase   = &ledger.Error{Kind: ledger.FailedPrecondition, Message: "refund exceeds what is left of the purchase"}
)

// RefundPlan is what a refund did; it is stored on the transaction so that a
// refund reversal restores exactly that.
type RefundPlan struct {
	Channel            Channel      `json:"channel"`
	StoreTransactionID string       `json:"store_transaction_id"`
	RefundID           string       `json:"refund_id"`
	User               string       `json:"user"`
	Policy             RefundPolicy `json:"policy"`           // as applied: a clawback given up is loss
	RequestedPolicy    RefundPolicy `json:"requested_policy"` // as asked, for a retry to match
	Currency           string       `json:"currency"`
	Requested          int64        `json:"requested"` // coins asked for; 0: all that was left
	Coins              int64        `json:"coins"`
	Unspent            int64        `json:"unspent"`
	UnspentValue       string       `json:"unspent_value"`
	Gross              string       `json:"gross"` // back to the customer: net + fee
	Fee                string       `json:"fee"`
	Loss               string       `json:"loss"`           // value of spent coins refunded, before recovery
	Owed               int64        `json:"owed,omitempty"` // spent coins charged to the user (OweCoins)
	// Attributed maps each gift to the spent coins of this lot this refund
	// charged to it (newest gifts first), clawed back or not, so that a later
	// partial refund charges other gifts.
	Attributed map[string]int64 `json:"attributed,omitempty"`
	Clawbacks  []Clawback       `json:"clawbacks,omitempty"`
}

// Clawback is fractional diamonds taken back from one earner's carry, whole
// granules coming out of one pending account.
type Clawback struct {
	Earner     string `json:"earner"`
	ReleaseDay string `json:"release_day"`
	Diamonds   string `json:"diamonds"`
	Granule    string `json:"granule"`
	Value      string `json:"diamond_value"`
	Currency   string `json:"currency"`
	// Lender is the pending account the granules come out of when the
	// release day's cannot give them back: a later day's gift minted the
	// granule that this gift's fraction went into.
	Lender string `json:"lender,omitempty"`
}

func (c Clawback) releaseDay() time.Time {
	d, _ := time.Parse(releaseDayLayout, c.ReleaseDay)
	return d
}

// pending is the account the clawback's granules come out of.
func (c Clawback) pending() string {
	return cmp.Or(c.Lender, PendingDiamonds(c.Earner, c.releaseDay()))
}

const maxRefundAttempts = 5

// Refund gives a purchase's coins back to the store. Unspent coins of its lot
// are burned with their deferred revenue, and the purchase's fiat legs are
// reversed in proportion (cumulative rounding, so refunding a purchase in
// parts reverses exactly its legs). Coins already spent follow the policy:
// with ClawbackThenLoss the diamonds they earned (newest gifts first) come
// back out of their earners' carries and pending diamonds where the release
// day has not passed, reducing the loss by their value; the rest of their
// value is refund loss. A refund of an unknown purchase, or of more than is
// left of it, is refused.
func (e *Economy) Refund(ctx context.Context, req RefundRequest, policy RefundPolicy) (*ledger.Transaction, error) {
	const op = "economy.Refund"
	if !req.Channel.Valid() {
		return nil, invalid(op, "channel", "must be apple, google or web")
	}
	if err := checkID(op, "store_transaction_id", req.StoreTransactionID, 128); err != nil {
		return nil, err
	}
	if err := checkID(op, "refund_id", req.RefundID, 128); err != nil {
		return nil, err
	}
	if req.Coins < 0 {
		return nil, invalid(op, "coins", "must not be negative")
	}
	if policy != ClawbackThenLoss && policy != AbsorbLoss && policy != OweCoins {
		return nil, invalid(op, "policy", "must be clawback, loss or debt")
	}
	if req.RefundedAt.IsZero() || req.RefundedAt.After(e.clock().Add(maxClockSkew)) {
		return nil, invalid(op, "refunded_at", "must be given and not in the future")
	}
	purchase, err := e.ledger.TransactionByKey(ctx, purchaseKey(req.Channel, req.StoreTransactionID))
	if errors.Is(err, ledger.ErrTransactionNotFound) {
		return nil, &ledger.Error{Op: op, Field: "store_transaction_id", Err: ErrPurchaseNotFound}
	}
	if err != nil {
		return nil, err
	}
	var bought struct {
		User string `json:"user"`
		Lot  Lot    `json:"lot"`
	}
	if err := json.Unmarshal(purchase.Metadata, &bought); err != nil {
		return nil, &ledger.Error{Op: op, Kind: ledger.Internal, Message: "purchase " + purchase.ID.String() + " has no readable lot"}
	}
	key := fmt.Sprintf("refund:%s:%s", req.Channel, req.RefundID)
	for attempt := 1; ; attempt++ {
		if done, err := e.replayRefund(ctx, op, key, req, policy); done != nil || err != nil {
			if err == nil { // finish a settlement a crash left undone
				err = e.settleDebt(ctx, bought.User, key)
			}
			return done, err
		}
		post, plan, err := e.planRefund(ctx, op, req, purchase.ID, bought.User, bought.Lot, policy, attempt == maxRefundAttempts)
		if err != nil {
			return nil, err
		}
		post.IdempotencyKey = key
		post.PastFrozen = true // the store has refunded: recorded, blocked viewer or not
		tx, err := e.ledger.Post(ctx, post)
		if errors.Is(err, ledger.ErrIdempotencyConflict) {
			// The same refund id committed first, planned from another
			// state of the lot (the store's notification and its retry):
			// the key is committed, so the next round's replay answers
			// with it, or refuses a different refund under that id.
			continue
		}
		// The lot or a pending account moved since the plan was read (another
		// refund of the same purchase, a gift, a release): plan again. The
		// last attempt claws nothing back, so a drained pending account
		// cannot block a refund.
		moved := errors.Is(err, ledger.ErrLotChanged) || errors.Is(err, ledger.ErrRefundExceedsLot) ||
			(errors.Is(err, ledger.ErrInsufficientFunds) && len(plan.Clawbacks) > 0)
		if moved && attempt < maxRefundAttempts {
			continue
		}
		if moved { // the lot moved on every attempt
			if req.Coins > 0 && errors.Is(err, ledger.ErrRefundExceedsLot) {
				return nil, &ledger.Error{Op: op, Field: "coins", Err: ErrBeyondPurchase, Message: ledger.Reason(err)}
			}
			return nil, &ledger.Error{Op: op, Field: "store_transaction_id", Kind: ledger.Aborted,
				Message: fmt.Sprintf("the purchase's coins moved while each of %d attempts was planned (other refunds, gifts); retry with the same refund_id", maxRefundAttempts)}
		}
		if err == nil && plan.Owed > 0 {
			err = e.settleDebt(ctx, plan.User, key)
		}
		return tx, err
	}
}

// replayRefund answers a refund id seen before: the original when the request
// is the same (purchase, coins, policy and time), a conflict when it is not.
func (e *Economy) replayRefund(ctx context.Context, op, key string, req RefundRequest, policy RefundPolicy) (*ledger.Transaction, error) {
	tx, err := e.ledger.TransactionByKey(ctx, key)
	if errors.Is(err, ledger.ErrTransactionNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var plan RefundPlan
	_ = json.Unmarshal(tx.Metadata, &plan)
	if plan.StoreTransactionID != req.StoreTransactionID || plan.Requested != req.Coins || plan.asked() != policy ||
		!tx.EffectiveAt.Equal(req.RefundedAt.Truncate(time.Microsecond)) {
		return nil, &ledger.Error{Op: op, Field: "refund_id", Err: ledger.ErrIdempotencyConflict}
	}
	tx.Replayed = true
	return tx, nil
}

// asked is the policy the refund was asked with. A plan recorded before
// RequestedPolicy was kept has only the policy applied, which is the one
// asked unless the refund gave a clawback up, and so still matches the
// store's retries across the upgrade in nearly every case.
func (p RefundPlan) asked() RefundPolicy {
	if p.RequestedPolicy == "" {
		return p.Policy
	}
	return p.RequestedPolicy
}

// planRefund reads the lot and works out the refund's postings; given up
// (the last attempt), a clawback becomes loss.
func (e *Economy) planRefund(ctx context.Context, op string, req RefundRequest, lotID uuid.UUID, user string, bought Lot,
	asked RefundPolicy, giveUpClawback bool) (ledger.PostRequest, *RefundPlan, error) {
	policy := asked
	if giveUpClawback && policy == ClawbackThenLoss {
		policy = AbsorbLoss
	}
	var post ledger.PostRequest
	lot, err := e.ledger.Lot(ctx, lotID)
	if err != nil {
		return post, nil, err
	}
	asset, err := e.ledger.Asset(ctx, bought.Currency)
	if err != nil {
		return post, nil, err
	}
	left := lot.Units.Sub(lot.Refunded)
	k := decimal.NewFromInt(req.Coins)
	if req.Coins == 0 {
		k = left
	}
	if k.Sign() <= 0 || k.GreaterThan(left) {
		return post, nil, &ledger.Error{Op: op, Field: "coins", Err: ErrBeyondPurchase,
			Message: fmt.Sprintf("%s of %s coins are left to refund", left, lot.Units)}
	}
	unspent := decimal.Min(k, lot.UnitsLeft)
	unspentValue := ledger.ReliefValue(unspent, lot.UnitsLeft, lot.ValueLeft, asset.Scale)
	// Cumulative rounding: parts of a purchase refunded one by one add up to
	// exactly its legs.
	share := func(total string) decimal.Decimal {
		t := decimal.RequireFromString(total)
		upTo := func(n decimal.Decimal) decimal.Decimal { return t.Mul(n).Div(lot.Units).Round(asset.Scale) }
		return upTo(lot.Refunded.Add(k)).Sub(upTo(lot.Refunded))
	}
	gross, fee := share(bought.Gross), share(bought.Fee)
	loss := gross.Sub(unspentValue) // the spent coins' value
	plan := &RefundPlan{Channel: req.Channel, StoreTransactionID: req.StoreTransactionID, RefundID: req.RefundID, User: user,
		Policy: policy, RequestedPolicy: asked, Currency: bought.Currency, Requested: req.Coins, Coins: k.IntPart(), Unspent: unspent.IntPart(),
		UnspentValue: unspentValue.String(), Gross: gross.String(), Fee: fee.String(), Loss: loss.String()}
	if spent := k.Sub(unspent); spent.Sign() > 0 && policy == ClawbackThenLoss {
		if err := e.planClawbacks(ctx, lotID, spent.IntPart(), plan); err != nil {
			return post, nil, err
		}
	}
	if policy == OweCoins {
		plan.Owed = k.Sub(unspent).IntPart()
	}
	postings, carries, err := e.refundPostings(ctx, plan, bought.Channel, 1)
	if err != nil {
		return post, nil, err
	}
	meta, _ := json.Marshal(plan)
	return ledger.PostRequest{
		Kind:        "refund",
		EffectiveAt: req.RefundedAt,
		Metadata:    meta,
		Postings:    postings,
		Carries:     carries,
		RefundLot: &ledger.LotRefund{Lot: lotID, Holder: CoinWallet(user), ValueAccount: FiatAccount(DeferredRevenue, bought.Currency),
			Units: k, Unspent: unspent, UnspentValue: unspentValue, RefundedBefore: lot.Refunded},
	}, plan, nil
}

// refundPostings renders a plan's postings and clawback carries; sign -1
// renders its exact reversal.
func (e *Economy) refundPostings(ctx context.Context, plan *RefundPlan, ch Channel, sign int64) ([]ledger.PostingRequest, []ledger.Carry, error) {
	cur := plan.Currency
	receivable, feeAccount := FiatAccount(ReceivableAppStore+":"+string(ch), cur), FiatAccount(StoreCommission, cur)
	if ch == Web {
		receivable, feeAccount = FiatAccount(ClearingPSP, cur), FiatAccount(PaymentFees, cur)
	}
	lossAccount := func(c string) string { return FiatAccount(RefundLoss, c) }
	var out []ledger.PostingRequest
	add := func(account string, side ledger.Side, amount decimal.Decimal) {
		if amount.Sign() < 0 {
			amount, side = amount.Neg(), opposite(side)
		}
		if amount.Sign() == 0 {
			return
		}
		if sign < 0 {
			side = opposite(side)
		}
		out = append(out, ledger.PostingRequest{Account: account, Side: side, Amount: amount})
	}
	gross, fee := decimal.RequireFromString(plan.Gross), decimal.RequireFromString(plan.Fee)
	unspent, unspentValue := decimal.NewFromInt(plan.Unspent), decimal.RequireFromString(plan.UnspentValue)
	add(receivable, ledger.Credit, gross.Sub(fee))
	add(feeAccount, ledger.Credit, fee)
	owed := decimal.NewFromInt(plan.Owed) // spent coins burned out of the user's debt
	add(CoinWallet(plan.User), ledger.Debit, unspent)
	add(CoinDebt(plan.User), ledger.Debit, owed)
	add(CoinIssued, ledger.Credit, unspent.Add(owed))
	add(FiatAccount(DeferredRevenue, cur), ledger.Debit, unspentValue)
	add(lossAccount(cur), ledger.Debit, decimal.RequireFromString(plan.Loss))
	opens := []ledger.Account{refundLossAccount(cur)}
	if plan.Owed > 0 {
		opens = append(opens, coinDebtAccount(plan.User))
	}
	var carries []ledger.Carry
	for _, c := range plan.Clawbacks {
		granule := decimal.RequireFromString(c.Granule)
		carries = append(carries, ledger.Carry{
			Account: DiamondCarry(c.Earner), Source: DiamondFracIssued,
			Fraction: decimal.RequireFromString(c.Diamonds).Mul(decimal.NewFromInt(-sign)), Granule: granule,
			Legs: []ledger.CarryLeg{
				{From: DiamondIssued, To: c.pending(), PerGranule: granule},
				// Diamonds taken back reduce the loss by what the platform no
				// longer owes for them.
				{From: lossAccount(c.Currency), To: CreatorPayable(c.Earner, c.Currency), PerGranule: granule.Mul(decimal.RequireFromString(c.Value))},
			},
		})
		opens = append(opens, refundLossAccount(c.Currency))
	}
	for _, a := range opens {
		if err := e.open(ctx, a); err != nil {
			return nil, nil, err
		}
	}
	return out, carries, nil
}

// standingRefunds reads the plans of a lot's refunds not reversed, oldest
// first, from the lot's moves.
func (e *Economy) standingRefunds(ctx context.Context, moves []ledger.LotMove) ([]RefundPlan, error) {
	reversed := map[uuid.UUID]bool{}
	for _, m := range moves {
		if m.Kind == "refund-reversal" && m.Reverses != nil {
			reversed[*m.Reverses] = true
		}
	}
	var plans []RefundPlan
	for _, m := range moves {
		if m.Kind != "refund" || reversed[m.TxID] {
			continue
		}
		tx, err := e.ledger.Transaction(ctx, m.TxID)
		if err != nil {
			return nil, err
		}
		var plan RefundPlan
		_ = json.Unmarshal(tx.Metadata, &plan)
		plans = append(plans, plan)
	}
	return plans, nil
}

func opposite(s ledger.Side) ledger.Side {
	if s == ledger.Debit {
		return ledger.Credit
	}
	return ledger.Debit
}

// planClawbacks attributes spent coins of the lot to the gifts that spent
// them, newest first, skipping coins an earlier refund charged, and takes
// back each earner's share of those gifts' diamonds while still pending.
func (e *Economy) planClawbacks(ctx context.Context, lotID uuid.UUID, spent int64, plan *RefundPlan) error {
	moves, err := e.ledger.LotMoves(ctx, lotID)
	if err != nil {
		return err
	}
	netCoins := map[uuid.UUID]int64{} // gift → its coins from this lot, less reversals
	var gifts []uuid.UUID             // oldest first
	for _, m := range moves {
		switch {
		case m.Kind == "gift":
			if _, seen := netCoins[m.TxID]; !seen {
				gifts = append(gifts, m.TxID)
			}
			netCoins[m.TxID] += m.Units.IntPart()
		case m.Kind == "gift-reversal" && m.Reverses != nil:
			netCoins[*m.Reverses] += m.Units.IntPart() // negative: the coins came back
		}
	}
	standing, err := e.standingRefunds(ctx, moves)
	if err != nil {
		return err
	}
	attributed := map[uuid.UUID]int64{}
	for _, prior := range standing {
		for g, n := range prior.Attributed {
			if id, err := uuid.Parse(g); err == nil {
				attributed[id] += n
			}
		}
	}
	now := e.clock()
	byTarget := map[string]*Clawback{}
	var order []string
	plan.Attributed = map[string]int64{}
	for i := len(gifts) - 1; i >= 0 && spent > 0; i-- {
		g := gifts[i]
		n := min(spent, netCoins[g]-attributed[g])
		if n <= 0 {
			continue
		}
		spent -= n
		plan.Attributed[g.String()] = n
		tx, err := e.ledger.Transaction(ctx, g)
		if err != nil {
			return err
		}
		terms, err := giftTerms("economy.Refund", "store_transaction_id", tx) // a gift its coins paid for
		if err != nil {
			return err
		}
		if !terms.releaseDay().Add(24 * time.Hour).After(now) {
			continue // released or due: nothing pending to take back
		}
		for _, s := range terms.shares() {
			d := s.diamonds.Mul(decimal.NewFromInt(n)).Div(decimal.NewFromInt(terms.Coins)).Truncate(fracScale)
			if d.IsZero() {
				continue
			}
			target := s.earner + "|" + terms.ReleaseDay + "|" + terms.Granule + "|" + terms.DiamondValue + "|" + terms.Currency
			c, ok := byTarget[target]
			if !ok {
				c = &Clawback{Earner: s.earner, ReleaseDay: terms.ReleaseDay, Diamonds: "0", Granule: terms.Granule, Value: terms.DiamondValue, Currency: terms.Currency}
				byTarget[target] = c
				order = append(order, target)
			}
			c.Diamonds = decimal.RequireFromString(c.Diamonds).Add(d).String()
		}
	}
	sort.Strings(order)
	for _, t := range order {
		plan.Clawbacks = append(plan.Clawbacks, *byTarget[t])
	}
	return e.lendGranules(ctx, plan)
}

// lendGranules splits each clawback, in the order the ledger applies them,
// so that the whole granules its take-back returns come out of pending
// accounts that hold them: its release day's, else the latest days' of the
// earner's (named as the part's lender). A clawback whose earner's pending
// accounts together hold too few is dropped, and its value stays loss. A
// carry or pending account that moves before the refund posts refuses it,
// and the refund is planned again.
func (e *Economy) lendGranules(ctx context.Context, plan *RefundPlan) error {
	tb := e.takeBacks()
	var kept []Clawback
	for _, c := range plan.Clawbacks {
		own := PendingDiamonds(c.Earner, c.releaseDay())
		parts, ok, err := tb.split(ctx, c.Earner, own, decimal.RequireFromString(c.Diamonds), decimal.RequireFromString(c.Granule))
		if err != nil {
			return err
		}
		if len(kept)+len(parts) > ledger.MaxCarries {
			break // a transaction's carries are bounded: these and the rest stay loss
		}
		if !ok {
			continue // the value stays loss
		}
		for _, p := range parts {
			part := c
			part.Diamonds = p.diamonds.String()
			if p.pending != own {
				part.Lender = p.pending
			}
			kept = append(kept, part)
		}
	}
	plan.Clawbacks = kept
	return nil
}

// ErrRefundNotFound is returned when reversing a refund that was not booked.
var ErrRefundNotFound = &ledger.Error{Kind: ledger.NotFound, Message: "no such refund"}

// ReverseRefundRequest is Apple's REFUND_REVERSED for an earlier refund.
type ReverseRefundRequest struct {
	Channel  Channel
	RefundID string
}

// ReverseRefund restores exactly what a refund took: the burned coins go back
// into the wallet and the lot, the fiat legs and the loss are reversed, and
// clawed-back diamonds return to their earners' carries and pending accounts
// (and are released at once from those whose day is over). A refund is
// reversed at most once.
//
// A debt the refund added is taken back after undoing the settlements that
// repaid it. Those that repaid it with coins of this refund's own purchase
// can be undone only once the reversal restores its lot, so then the debt
// is taken back by a second transaction (kind refund-reversal-debt, named
// in the reversal's metadata); a retry finishes it. A settlement that
// repaid it with coins of another purchase refunded since refuses the
// reversal (ErrRepaidFromRefunded) until that refund is reversed.
func (e *Economy) ReverseRefund(ctx context.Context, req ReverseRefundRequest) (*ledger.Transaction, error) {
	const op = "economy.ReverseRefund"
	if !req.Channel.Valid() {
		return nil, invalid(op, "channel", "must be apple, google or web")
	}
	if err := checkID(op, "refund_id", req.RefundID, 128); err != nil {
		return nil, err
	}
	refund, err := e.ledger.TransactionByKey(ctx, fmt.Sprintf("refund:%s:%s", req.Channel, req.RefundID))
	if errors.Is(err, ledger.ErrTransactionNotFound) {
		return nil, &ledger.Error{Op: op, Field: "refund_id", Err: ErrRefundNotFound}
	}
	if err != nil {
		return nil, err
	}
	var plan RefundPlan
	if err := json.Unmarshal(refund.Metadata, &plan); err != nil {
		return nil, &ledger.Error{Op: op, Kind: ledger.Internal, Message: "refund " + refund.ID.String() + " has no readable plan"}
	}
	postings, carries, err := e.refundPostings(ctx, &plan, req.Channel, -1)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("refund-reversal:%s:%s", req.Channel, req.RefundID)
	meta, _ := json.Marshal(map[string]string{"refund_tx": refund.ID.String(), "refund_id": req.RefundID})
	id := refund.ID
	reversal := ledger.PostRequest{
		IdempotencyKey: key,
		Kind:           "refund-reversal",
		Metadata:       meta,
		Postings:       postings,
		Carries:        carries,
		Reverses:       &id,
		PastFrozen:     true, // as the refund
	}
	if plan.Owed == 0 {
		tx, err := e.ledger.Post(ctx, reversal)
		if err == nil {
			err = e.releaseRestored(ctx, op, &plan)
		}
		return tx, err
	}
	tx, err := e.reverseDebtRefund(ctx, op, reversal, plan, req)
	// Whatever debt is left after the reversal, or after settlements undone
	// on the way for a reversal refused, coins in the wallet repay again.
	if serr := e.settleDebt(ctx, plan.User, key); err == nil {
		err = serr
	}
	if err != nil {
		return tx, err
	}
	return tx, e.releaseRestored(ctx, op, &plan)
}

// reverseDebtRefund posts the reversal of a refund that left a debt: after
// undoing the settlements that repaid that debt, or, when some of them
// repaid it with coins of the refund's own purchase, apart from its debt.
func (e *Economy) reverseDebtRefund(ctx context.Context, op string, reversal ledger.PostRequest, plan RefundPlan, req ReverseRefundRequest) (*ledger.Transaction, error) {
	owed := decimal.NewFromInt(plan.Owed)
	tx, err := e.postTakingBackDebt(ctx, op, plan.User, owed, purchaseKey(plan.Channel, plan.StoreTransactionID), reversal)
	if errors.Is(err, errRestoreLotFirst) {
		// Those settlements (the refund counted their coins as spent and
		// owed them again) can be undone only once its lot is restored,
		// and the debt taken back only once they are.
		tx, err = e.ledger.Post(ctx, reversalApartFromDebt(reversal, plan, req))
		if errors.Is(err, ledger.ErrIdempotencyConflict) { // a concurrent reversal, in full, first
			if tx, err = e.ledger.TransactionByKey(ctx, reversal.IdempotencyKey); err == nil {
				tx.Replayed = true
			}
		}
	}
	if err != nil {
		return nil, err
	}
	var apart struct {
		DebtTakenBackBy string `json:"debt_taken_back_by"`
	}
	if json.Unmarshal(tx.Metadata, &apart); apart.DebtTakenBackBy == "" {
		return tx, nil
	}
	// Now, or by a retry of a run a crash or a refusal interrupted.
	meta, _ := json.Marshal(map[string]string{"refund_tx": reversal.Reverses.String(), "refund_id": req.RefundID, "refund_reversal_tx": tx.ID.String()})
	_, err = e.postTakingBackDebt(ctx, op, plan.User, owed, "", ledger.PostRequest{
		IdempotencyKey: apart.DebtTakenBackBy,
		Kind:           debtTakeBackKind,
		Metadata:       meta,
		Postings: []ledger.PostingRequest{
			{Account: CoinDebt(plan.User), Side: ledger.Credit, Amount: owed},
			{Account: CoinIssued, Side: ledger.Debit, Amount: owed},
		},
		PastFrozen: true,
	})
	return tx, err
}

// debtTakeBackKind takes back the debt of a refund whose reversal posted
// apart from it.
const debtTakeBackKind = "refund-reversal-debt"

// reversalApartFromDebt is a debt refund's reversal without its debt: the
// refund's lot, wallet coins, fiat legs and clawbacks. Its metadata names
// the transaction that takes the debt back.
func reversalApartFromDebt(full ledger.PostRequest, plan RefundPlan, req ReverseRefundRequest) ledger.PostRequest {
	owed := decimal.NewFromInt(plan.Owed)
	var postings []ledger.PostingRequest
	for _, p := range full.Postings {
		switch p.Account {
		case CoinDebt(plan.User):
			continue
		case CoinIssued:
			if p.Amount = p.Amount.Sub(owed); p.Amount.IsZero() {
				continue
			}
		}
		postings = append(postings, p)
	}
	var meta map[string]string
	_ = json.Unmarshal(full.Metadata, &meta)
	meta["debt_taken_back_by"] = fmt.Sprintf("%s:%s:%s", debtTakeBackKind, req.Channel, req.RefundID)
	full.Metadata, _ = json.Marshal(meta)
	full.Postings = postings
	return full
}

// errRestoreLotFirst: the debt can be taken back only once the refund's own
// lot is restored (unsettle).
var errRestoreLotFirst = errors.New("the refund's lot must be restored first")

// postTakingBackDebt posts req, which takes owed coins back out of user's
// debt, once the settlements that repaid them are undone (own: the key of
// the purchase whose refund is being reversed, see unsettle). A settlement
// that repays the debt again before the post (a purchase's, meanwhile) is
// undone in the next round. A request already recorded under req's key is
// answered as a replay, whatever form it took.
func (e *Economy) postTakingBackDebt(ctx context.Context, op, user string, owed decimal.Decimal, own string, req ledger.PostRequest) (*ledger.Transaction, error) {
	for attempt := 1; ; attempt++ {
		done, err := e.ledger.TransactionByKey(ctx, req.IdempotencyKey)
		if err == nil {
			done.Replayed = true
			return done, nil
		}
		if !errors.Is(err, ledger.ErrTransactionNotFound) {
			return nil, err
		}
		short, err := e.unsettle(ctx, user, owed, own)
		if errors.Is(err, errRepaidMeanwhile) {
			if attempt < maxRefundAttempts {
				continue
			}
			return nil, abortedRepaidAgain(op)
		}
		if errors.Is(err, ErrRepaidFromRefunded) {
			// A concurrent caller's post, once it took the debt back,
			// leaves only older settlements to this one's unsettle.
			if done, derr := e.ledger.TransactionByKey(ctx, req.IdempotencyKey); derr == nil {
				done.Replayed = true
				return done, nil
			}
		}
		if err != nil {
			return nil, err
		}
		if short {
			return nil, errRestoreLotFirst
		}
		tx, err := e.ledger.Post(ctx, req)
		retry := errors.Is(err, ledger.ErrInsufficientFunds) || errors.Is(err, ledger.ErrIdempotencyConflict)
		if !retry {
			return tx, err
		}
		if attempt < maxRefundAttempts {
			// Repaid again, or the key committed first in another form
			// (a concurrent reversal): the next round reads which.
			continue
		}
		// The debt read now could already be back (another refund), so
		// only the last round asks whether the debt is what is short.
		debt, berr := e.ledger.Balance(ctx, CoinDebt(user), time.Time{})
		if berr != nil {
			return nil, berr
		}
		if !errors.Is(err, ledger.ErrInsufficientFunds) || !debt.LessThan(owed) {
			return nil, err
		}
		return nil, abortedRepaidAgain(op)
	}
}

func abortedRepaidAgain(op string) error {
	return &ledger.Error{Op: op, Field: "refund_id", Kind: ledger.Aborted,
		Message: fmt.Sprintf("the user's debt was repaid again during each of %d attempts; retry with the same refund_id", maxRefundAttempts)}
}

// releaseRestored releases the diamonds a refund reversal returned to pending
// accounts whose day is already over, as the release job would have: the
// job closes such days, so nothing else would. A retried reversal runs it
// again, finishing what a crash left undone.
func (e *Economy) releaseRestored(ctx context.Context, op string, plan *RefundPlan) error {
	for _, c := range plan.Clawbacks {
		_, day, _ := ParsePending(c.pending())
		if day.Add(24 * time.Hour).After(e.clock()) {
			continue
		}
		if _, err := e.release(ctx, op, c.pending(), c.Earner); err != nil {
			return err
		}
	}
	return nil
}
