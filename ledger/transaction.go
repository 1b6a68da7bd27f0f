package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Limits on one transaction request.
const (
	MaxPostings      = 256
	MaxMetadataBytes = 16 << 10
)

// PostingRequest moves Amount of the account's asset on one side of it.
type PostingRequest struct {
	Account string
	Side    Side
	Amount  decimal.Decimal
	// SpillTo, on a debit, debits Account only up to its balance and the rest
	// from SpillTo (promo coins first, then paid ones). The split is decided
	// when the transaction commits, under the batch's locks.
	SpillTo string
}

// PostRequest asks for one balanced transaction.
type PostRequest struct {
	// IdempotencyKey identifies the request: a retry with the same key and
	// content returns the original transaction and posts nothing.
	IdempotencyKey string
	Kind           string          // e.g. "transfer", "purchase", "gift"
	EffectiveAt    time.Time       // zero: when it is recorded
	Metadata       json.RawMessage // a JSON object, or empty
	Postings       []PostingRequest
	// OpenLot, Relieve and RefundLot move FIFO lots (lots.go); a transaction
	// that opens a lot does nothing else with lots.
	OpenLot   *LotOpen
	Relieve   *Relief
	RefundLot *LotRefund
	// Carries convert fractions into whole granules at commit (carry.go).
	Carries []Carry
	// Expect makes the transaction conditional on balances (expect.go).
	Expect []Expectation
	// Sweep moves an account's whole balance at commit (sweep.go).
	Sweep *Sweep
	// Reverses makes this the compensation of an earlier transaction, with
	// postings of the caller's choosing: a transaction is reversed at most
	// once, and the lots it drew on get back exactly what it took from them.
	// Service.Reverse builds the plain mirror image.
	Reverses *uuid.UUID
	// PastFrozen posts to frozen accounts too (closed ones still refuse): a
	// movement that has already happened outside the ledger, such as a
	// store's charge or refund, is recorded whatever block the platform put
	// on the accounts.
	PastFrozen bool
}

// Posting is one posted leg of a transaction.
type Posting struct {
	Account   string
	AccountID uuid.UUID
	Asset     string
	Side      Side
	Amount    decimal.Decimal
}

// Transaction is a posted, immutable set of balanced postings.
type Transaction struct {
	ID             uuid.UUID
	IdempotencyKey string
	Kind           string
	EffectiveAt    time.Time
	// RecordedAt is when the ledger committed it, taken from the database
	// clock after the transaction's balance rows were locked, so two
	// transactions touching a common balance are recorded in commit order.
	RecordedAt time.Time
	// BatchSeq orders transactions committed together with the same RecordedAt.
	BatchSeq int
	Metadata json.RawMessage
	Reverses *uuid.UUID // set on a reversal: the transaction it undoes
	Postings []Posting
	// MovesLots is set when the transaction opened or relieved FIFO lots;
	// such a transaction is undone by the operation that owns the lots (a
	// refund), not by a plain reversal.
	MovesLots bool
	// Replayed is true when this is the original result returned for a
	// retried idempotency key; nothing was posted by the retry.
	Replayed bool
}

var kindRE = regexp.MustCompile(`^[a-z][a-z0-9_.\-]{0,63}$`)

func validateKey(op, field, key string) error {
	if key == "" {
		return invalid(op, field, "is required")
	}
	if len(key) > MaxNameLength {
		return invalid(op, field, "is longer than %d bytes", MaxNameLength)
	}
	for _, r := range key {
		if r < 0x21 || r > 0x7e {
			return invalid(op, field, "must be printable ASCII without spaces")
		}
	}
	return nil
}

func validateMetadata(op, field string, m json.RawMessage) error {
	_, err := canonicalMetadata(op, field, m)
	return err
}

// reencodeJSONObject decodes a JSON object (numbers kept exactly) and
// encodes it again: keys sorted, no spacing.
func reencodeJSONObject(m []byte) (json.RawMessage, bool) {
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(m))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	out, err := json.Marshal(obj)
	return out, err == nil
}

// StoredMetadata renders metadata read back from the database as a
// request's metadata is rendered when it is posted: PostgreSQL's jsonb prints
// its own spacing and key order, and a replay must answer what the original
// did.
func StoredMetadata(m json.RawMessage) json.RawMessage {
	if out, ok := reencodeJSONObject(m); ok {
		return out
	}
	return m
}

// canonicalMetadata checks metadata and renders it with sorted keys, so that
// two requests whose JSON differs only in key order or spacing hash alike.
// Empty metadata is the empty object.
func canonicalMetadata(op, field string, m json.RawMessage) (json.RawMessage, error) {
	if len(m) == 0 {
		return json.RawMessage("{}"), nil
	}
	if len(m) > MaxMetadataBytes {
		return nil, invalid(op, field, "is larger than %d bytes", MaxMetadataBytes)
	}
	if isCanonicalJSON(m) {
		// Already in the form below, as the economy writes it: decoding and
		// re-encoding it was 9% of the bench process's CPU under gift-hot.
		return bytes.Clone(m), nil
	}
	out, ok := reencodeJSONObject(m)
	if !ok {
		return nil, invalid(op, field, "must be a JSON object")
	}
	// PostgreSQL's jsonb cannot hold U+0000; refuse it here rather than fail
	// the database write.
	if bytes.Contains(out, []byte(`\u0000`)) {
		return nil, invalid(op, field, "must not contain the character U+0000")
	}
	return out, nil
}

// validate checks everything that does not need the ledger's state.
func (r *PostRequest) validate(op string) error {
	if err := validateKey(op, "idempotency_key", r.IdempotencyKey); err != nil {
		return err
	}
	if !kindRE.MatchString(r.Kind) {
		return invalid(op, "kind", "must be 1-64 characters of a-z, 0-9, '_', '.' or '-', starting with a letter")
	}
	meta, err := canonicalMetadata(op, "metadata", r.Metadata)
	if err != nil {
		return err
	}
	r.Metadata = meta
	if len(r.Postings) < 2 && len(r.Carries) == 0 && r.Sweep == nil { // a carry always posts, a sweep or nothing
		return invalid(op, "postings", "needs at least two postings")
	}
	if len(r.Postings) > MaxPostings {
		return invalid(op, "postings", "has more than %d postings", MaxPostings)
	}
	for i, p := range r.Postings {
		if err := ValidateAccountName(op, "account", p.Account); err != nil {
			return under(Indexed("postings", i), err)
		}
		if p.Side != Debit && p.Side != Credit {
			return invalid(op, Indexed("postings", i)+".side", "must be debit or credit")
		}
		if p.Amount.Sign() <= 0 {
			return invalid(op, Indexed("postings", i)+".amount", "must be positive")
		}
	}
	return nil
}

// checkBalanced refuses postings whose debits and credits differ in any asset.
func checkBalanced(op string, postings []Posting) error {
	// Debits less credits per asset, in the order the assets first appear.
	type assetNet struct {
		asset string
		net   sum
	}
	var nets []assetNet
	for _, p := range postings {
		j := slices.IndexFunc(nets, func(n assetNet) bool { return n.asset == p.Asset })
		if j < 0 {
			j = len(nets)
			nets = append(nets, assetNet{asset: p.Asset})
		}
		nets[j].net.add(p.Amount, p.Side != Debit)
	}
	for _, n := range nets {
		if n.net.sign() != 0 {
			return invalid(op, "postings", "debits and credits of %s differ by %s", n.asset, n.net.decimal().Abs())
		}
	}
	return nil
}

// fingerprintParts renders the lot, carry, expectation and sweep instructions for
// the fingerprint into one buffer sized for a gift's; nil for a request with
// none (a plain transfer).
func (r *PostRequest) fingerprintParts() []byte {
	if r.OpenLot == nil && r.Relieve == nil && r.RefundLot == nil && len(r.Carries) == 0 && len(r.Expect) == 0 && r.Sweep == nil {
		return nil
	}
	b := make(fpBuf, 0, 512)
	return *b.lots(r.OpenLot, r.Relieve, r.RefundLot).carries(r.Carries).expectations(r.Expect).sweep(r.Sweep)
}

// fingerprint hashes what the caller asked for, so a reused key with other
// content can be told from a retry. Defaults filled in by the ledger (an
// empty effective time) are hashed as sent; metadata must be canonical.
func fingerprint(kind string, effectiveAt time.Time, metadata json.RawMessage, reverses *uuid.UUID, postings []PostingRequest, lots []byte) []byte {
	// Length-prefixed fields, so no two different requests hash the same bytes.
	h := sha256.New()
	buf := make([]byte, 0, 128+len(metadata)+len(lots)+64*len(postings))
	var scratch [40]byte // a number rendered before its length is known
	field := func(tag byte, v string) { buf = appendField(buf, tag, v) }
	field('k', kind)
	if !effectiveAt.IsZero() {
		buf = appendField(buf, 'e', strconv.AppendInt(scratch[:0], effectiveAt.UnixMicro(), 10))
	}
	buf = appendField(buf, 'm', []byte(metadata))
	if reverses != nil {
		field('r', reverses.String())
	}
	for _, p := range postings {
		field('a', p.Account)
		field('s', p.Side.String())
		buf = appendField(buf, 'n', AppendDecimal(scratch[:0], p.Amount))
		if p.SpillTo != "" {
			field('p', p.SpillTo)
		}
	}
	if len(lots) > 0 {
		buf = appendField(buf, 'l', lots)
	}
	h.Write(buf)
	return h.Sum(nil)
}

// appendField appends one length-prefixed fingerprint field.
func appendField[T string | []byte](buf []byte, tag byte, v T) []byte {
	buf = append(buf, tag)
	buf = strconv.AppendInt(buf, int64(len(v)), 10)
	buf = append(buf, ':')
	return append(buf, v...)
}
