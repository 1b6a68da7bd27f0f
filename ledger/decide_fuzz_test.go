package ledger

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// FuzzDecide compares Decide with a plain serial model on random batches:
// transfers between a few accounts (some may not go negative), repeated keys
// with the same or other content, spills and sweeps. For every request the outcome
// must match the model's, and the batch's balance deltas must equal the
// model's final balances.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte{0, 0, 0, 255, 255, 255, 7, 7, 7, 7, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		accounts := []*Account{
			{ID: uuid.New(), Name: "a0", Normal: Credit, Shards: 1},
			{ID: uuid.New(), Name: "a1", Normal: Credit, Shards: 2},
			{ID: uuid.New(), Name: "a2", Normal: Debit, Shards: 1},
			{ID: uuid.New(), Name: "mint", Normal: Credit, AllowNegative: true, Shards: 3},
		}
		start := map[uuid.UUID]decimal.Decimal{}
		for i, a := range accounts[:3] {
			start[a.ID] = decimal.NewFromInt(int64(5 * i))
		}
		var batch []*Pending
		type ask struct {
			key         string
			from, to    *Account
			spill       *Account
			sweep       bool // from's whole balance, amount unused
			amount      int64
			fingerprint string
		}
		var asks []ask
		for i := 0; i+2 < len(data) && len(batch) < 40; i += 3 {
			from, to := accounts[int(data[i])%4], accounts[int(data[i]>>2)%4]
			if from == to {
				continue
			}
			amount := int64(data[i+1]%9) + 1
			key := fmt.Sprintf("k%d", data[i+2]%8)
			a := ask{key: key, from: from, to: to, amount: amount}
			if data[i+2]&0x80 != 0 && !from.AllowNegative && from.Normal == Credit {
				for _, s := range accounts {
					if s != from && s != to && s.Normal == Credit {
						a.spill = s
						break
					}
				}
			}
			a.sweep = amount == 9 && !from.AllowNegative && a.spill == nil
			a.fingerprint = fmt.Sprint(from.Name, to.Name, amount, a.spill != nil, a.sweep)
			pd := pendingTransfer(key, from, to, amount)
			pd.Fingerprint = []byte(a.fingerprint)
			if a.spill != nil {
				pd.spills = []spill{{index: 0, to: a.spill}}
			}
			if a.sweep {
				pd.Tx.Postings, pd.Accounts = nil, nil
				pd.sweep = &sweepSpec{from: from, to: to}
			}
			batch = append(batch, pd)
			asks = append(asks, a)
		}
		st := &State{Status: map[uuid.UUID]Status{}, Balance: map[uuid.UUID]decimal.Decimal{}}
		plan := PlanBatch(batch, 1)
		for id := range plan.Checked {
			st.Balance[id] = start[id]
		}
		Decide(batch, st)

		// The model: apply in order, the first accepted request with a key
		// claims it, no policy broken.
		bal := map[uuid.UUID]decimal.Decimal{}
		for id, b := range start {
			bal[id] = b
		}
		first := map[string]ask{}
		for i, a := range asks {
			pd := batch[i]
			if f, ok := first[a.key]; ok {
				switch {
				case f.fingerprint != a.fingerprint:
					if pd.Outcome != Refused || KindOf(pd.Err) != Conflict {
						t.Fatalf("#%d reused key with other content: %v %v", i, pd.Outcome, pd.Err)
					}
				case pd.Outcome != Duplicate:
					t.Fatalf("#%d repeated request: outcome %v", i, pd.Outcome)
				}
				continue
			}
			n := decimal.NewFromInt(a.amount)
			next := map[uuid.UUID]decimal.Decimal{}
			for id, b := range bal {
				next[id] = b
			}
			if a.sweep {
				held := bal[a.from.ID]
				if held.Sign() <= 0 {
					if pd.Outcome != Refused || !errors.Is(pd.Err, ErrNothingToSweep) {
						t.Fatalf("#%d sweep of %s holding %s: %v %v", i, a.from.Name, held, pd.Outcome, pd.Err)
					}
					continue
				}
				off, on := Debit, Credit
				if a.from.Normal == Debit {
					off, on = Credit, Debit
				}
				next[a.from.ID] = next[a.from.ID].Add(signed(a.from, off, held))
				next[a.to.ID] = next[a.to.ID].Add(signed(a.to, on, held))
			}
			fromTake, spillTake := n, decimal.Zero
			if a.spill != nil {
				fromTake = decimal.Min(n, decimal.Max(bal[a.from.ID], decimal.Zero))
				spillTake = n.Sub(fromTake)
			}
			if !a.sweep {
				next[a.from.ID] = next[a.from.ID].Add(signed(a.from, Debit, fromTake))
				if a.spill != nil {
					next[a.spill.ID] = next[a.spill.ID].Add(signed(a.spill, Debit, spillTake))
				}
				next[a.to.ID] = next[a.to.ID].Add(signed(a.to, Credit, n))
			}
			ok := true
			for _, acc := range accounts {
				if !acc.AllowNegative && next[acc.ID].Sign() < 0 {
					ok = false
				}
			}
			if ok != (pd.Outcome == Accepted) {
				t.Fatalf("#%d %+v: model ok=%v, Decide %v %v", i, a, ok, pd.Outcome, pd.Err)
			}
			if ok {
				bal = next
				first[a.key] = a
			}
		}
		got := map[uuid.UUID]decimal.Decimal{}
		for id, b := range start {
			got[id] = b
		}
		for _, d := range plan.Deltas(batch) {
			got[d.AccountID] = got[d.AccountID].Add(d.Delta)
		}
		for _, acc := range accounts {
			if !got[acc.ID].Equal(bal[acc.ID]) {
				t.Fatalf("%s: deltas give %s, the model %s", acc.Name, got[acc.ID], bal[acc.ID])
			}
		}
		// Every accepted transaction balances.
		for _, pd := range batch {
			if pd.Outcome == Accepted {
				var net decimal.Decimal
				for _, p := range pd.Tx.Postings {
					if p.Side == Debit {
						net = net.Add(p.Amount)
					} else {
						net = net.Sub(p.Amount)
					}
					if p.Amount.Sign() <= 0 {
						t.Fatalf("non-positive posting %+v", p)
					}
				}
				if !net.IsZero() {
					t.Fatalf("unbalanced %+v", pd.Tx.Postings)
				}
			}
		}
	})
}

// FuzzDecideLots compares Decide's FIFO relief with a plain model: lots read
// from the store and lots opened earlier in the same batch, reliefs taking
// the oldest units first, each take moving value_left × k / u rounded half up
// to cents, the last unit of a lot taking what is left. Lots carry value in X
// or Y, and a relief may lock only some of its legs: one whose takes reach a
// lot in an asset it did not lock must be deferred, leaving no trace; so must
// one that needs more than the oldest lots the batch read, if it read only
// some.
func FuzzDecideLots(f *testing.F) {
	f.Add([]byte{3, 50, 4, 20, 0, 5, 1, 7, 90, 0, 9, 0, 2})
	f.Add([]byte{3, 50, 6, 21, 0, 5, 1, 7, 90, 0, 9, 0, 2, 13, 22, 1, 31})
	f.Add([]byte{3, 50, 6, 21, 5, 7, 0, 1, 7, 2, 12, 3, 4, 2, 22, 1, 31, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		wallet := &Account{ID: uuid.New(), Name: "wallet", Asset: "C", Normal: Credit, Shards: 1}
		sink := &Account{ID: uuid.New(), Name: "sink", Asset: "C", Normal: Credit, AllowNegative: true, Shards: 1}
		assets := []string{"X", "Y"}
		deferred, revenue, cash := map[string]*Account{}, map[string]*Account{}, map[string]*Account{}
		legs := map[string]reliefLeg{}
		for _, a := range assets {
			deferred[a] = &Account{ID: uuid.New(), Name: "deferred:" + a, Asset: a, Normal: Credit, AllowNegative: true, Shards: 2}
			revenue[a] = &Account{ID: uuid.New(), Name: "revenue:" + a, Asset: a, Normal: Credit, AllowNegative: true, Shards: 2}
			cash[a] = &Account{ID: uuid.New(), Name: "cash:" + a, Asset: a, Normal: Debit, AllowNegative: true, Shards: 1}
			legs[a] = reliefLeg{from: deferred[a], to: revenue[a], scale: 2}
		}
		// What a relief may lock: every leg, or only those of the assets listed.
		guesses := [][]string{nil, {"X"}, {"Y"}, {}}
		type lot struct {
			id          uuid.UUID
			asset       string
			units, left decimal.Decimal
			value, vl   decimal.Decimal
		}
		var model []*lot
		st := &State{Status: map[uuid.UUID]Status{}, Balance: map[uuid.UUID]decimal.Decimal{}, Lots: map[uuid.UUID][]*Lot{}}
		held := decimal.Zero
		i := 0
		for ; i+1 < len(data) && len(model) < 3 && data[i]%4 != 0; i += 2 {
			u, v := decimal.NewFromInt(int64(data[i]%9)+1), decimal.New(int64(data[i+1])+1, -2)
			a := assets[data[i+1]%2]
			l := &lot{id: uuid.New(), asset: a, units: u, left: u, value: v, vl: v}
			model = append(model, l)
			st.Lots[wallet.ID] = append(st.Lots[wallet.ID], &Lot{ID: l.id, AccountID: wallet.ID, Units: u, UnitsLeft: u,
				ValueAccountID: deferred[a].ID, ValueAsset: a, Value: v, ValueLeft: v})
			held = held.Add(u)
		}
		st.Balance[wallet.ID] = held
		// The batch may have read only the oldest few of the wallet's lots.
		cut := 0
		if n := len(model); n > 0 && data[len(data)-1]&1 == 1 {
			cut = 1 + int(data[len(data)-1]>>1)%n
			st.LotsCut = map[uuid.UUID]int{wallet.ID: cut}
		}
		var batch []*Pending
		for ; i+1 < len(data) && len(batch) < 30; i += 2 {
			key := fmt.Sprintf("k%d", len(batch))
			if data[i]%3 == 0 { // open a lot
				u, v := int64(data[i+1]%9)+1, decimal.New(int64(data[i+1])*7+1, -2)
				a := assets[data[i]/3%2]
				pd := pendingTransfer(key, sink, wallet, u)
				pd.Tx.Postings = append(pd.Tx.Postings,
					Posting{Account: cash[a].Name, AccountID: cash[a].ID, Asset: a, Side: Debit, Amount: v},
					Posting{Account: deferred[a].Name, AccountID: deferred[a].ID, Asset: a, Side: Credit, Amount: v})
				pd.Accounts = append(pd.Accounts, cash[a], deferred[a])
				pd.openLot = &LotOpen{UnitsPosting: 1, ValuePosting: 3}
				batch = append(batch, pd)
				continue
			}
			k := int64(data[i+1]%12) + 1
			pd := pendingTransfer(key, wallet, sink, k)
			pd.relief = &reliefSpec{account: wallet, units: decimal.NewFromInt(k), legs: legs}
			if g := guesses[data[i]/3%4]; g != nil {
				pd.relief.narrowed, pd.relief.lockAssets = true, g
			}
			batch = append(batch, pd)
		}
		plan := PlanBatch(batch, 0)
		locked := map[uuid.UUID]bool{}
		for _, a := range plan.Accounts {
			locked[a.ID] = true
		}
		Decide(batch, st)

		for n, pd := range batch {
			if pd.openLot != nil {
				if pd.Outcome != Accepted {
					t.Fatalf("#%d opening a lot: %v %v", n, pd.Outcome, pd.Err)
				}
				u, v := pd.Tx.Postings[1].Amount, pd.Tx.Postings[3].Amount
				model = append(model, &lot{id: pd.Tx.ID, asset: pd.Tx.Postings[3].Asset, units: u, left: u, value: v, vl: v})
				continue
			}
			need := pd.relief.units
			avail := decimal.Zero
			for _, l := range model {
				avail = avail.Add(l.left)
			}
			if avail.LessThan(need) {
				// The wallet holds what its lots hold: its balance check refuses first.
				if pd.Outcome != Refused || !errors.Is(pd.Err, ErrInsufficientFunds) {
					t.Fatalf("#%d relief of %s with %s held: %v %v", n, need, avail, pd.Outcome, pd.Err)
				}
				continue
			}
			type take struct {
				l        *lot
				units, v decimal.Decimal
			}
			var takes []take
			unlocked := false
			for _, l := range model {
				if need.IsZero() {
					break
				}
				k := decimal.Min(need, l.left)
				if k.IsZero() {
					continue
				}
				v := l.vl
				if k.LessThan(l.left) {
					v = l.vl.Mul(k).Div(l.left).Round(2)
				}
				takes = append(takes, take{l, k, v})
				unlocked = unlocked || !pd.relief.locks(l.asset)
				need = need.Sub(k)
			}
			unread := false
			if cut > 0 {
				read := decimal.Zero
				for _, l := range model[:cut] {
					read = read.Add(l.left)
				}
				unread = read.LessThan(pd.relief.units)
			}
			if unlocked || unread {
				if pd.Outcome != Deferred || pd.Err != nil || len(pd.Tx.Postings) != 2 || pd.Reliefs != nil {
					t.Fatalf("#%d relief reaching an unlocked leg (%v) or unread lots (%v): %v %v, %d postings", n, unlocked, unread, pd.Outcome, pd.Err, len(pd.Tx.Postings))
				}
				continue
			}
			if pd.Outcome != Accepted {
				t.Fatalf("#%d relief: %v %v", n, pd.Outcome, pd.Err)
			}
			moved := map[string]decimal.Decimal{}
			for _, tk := range takes {
				tk.l.left, tk.l.vl = tk.l.left.Sub(tk.units), tk.l.vl.Sub(tk.v)
				moved[tk.l.asset] = moved[tk.l.asset].Add(tk.v)
			}
			got := map[string]decimal.Decimal{}
			for i, p := range pd.Tx.Postings {
				if !locked[pd.Accounts[i].ID] {
					t.Fatalf("#%d posts to %s, which the batch did not lock", n, p.Account)
				}
				if r := revenue[p.Asset]; r != nil && p.AccountID == r.ID {
					got[p.Asset] = got[p.Asset].Add(p.Amount)
				}
			}
			for _, a := range assets {
				if !got[a].Equal(moved[a]) {
					t.Fatalf("#%d relief moved %s %s, the model %s", n, got[a], a, moved[a])
				}
			}
		}
		// Each accepted relief learns the assets of the lots open after the batch.
		open := []string{}
		for _, l := range model {
			if l.left.Sign() > 0 && !slices.Contains(open, l.asset) {
				open = append(open, l.asset)
			}
		}
		slices.Sort(open)
		for n, pd := range batch {
			if pd.relief != nil && pd.Outcome == Accepted && !slices.Equal(pd.heldAssets, open) {
				t.Fatalf("#%d learned %v, the model's open lots are in %v", n, pd.heldAssets, open)
			}
		}
		byID := map[uuid.UUID]*Lot{}
		for _, l := range st.lots[wallet.ID] {
			byID[l.ID] = l
		}
		for _, l := range model {
			w := byID[l.id]
			if w == nil || !w.UnitsLeft.Equal(l.left) || !w.ValueLeft.Equal(l.vl) {
				t.Fatalf("lot %s: Decide %+v, model left %s value %s", l.id, w, l.left, l.vl)
			}
			if l.left.IsZero() && !l.vl.IsZero() {
				t.Fatalf("lot %s used up with %s value left", l.id, l.vl)
			}
		}
	})
}

// signed is a posting's effect on the balance as reported on the account's
// normal side: the model's own arithmetic, not the ledger's.
func signed(a *Account, side Side, amount decimal.Decimal) decimal.Decimal {
	if side == a.Normal {
		return amount
	}
	return amount.Neg()
}
