// Package api serves the ledger and the coin economy over gRPC. Protobuf
// types stop here: requests are checked and converted into the domain's
// types, and the domain's errors become gRPC statuses in one table.
package api

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coinledger/coinledger/ledger"
)

// codeOf is the one table from the domain's error kinds to gRPC codes.
var codeOf = map[ledger.Kind]codes.Code{
	ledger.Invalid:            codes.InvalidArgument,
	ledger.NotFound:           codes.NotFound,
	ledger.Conflict:           codes.AlreadyExists, // an idempotency key reused with other content
	ledger.InsufficientFunds:  codes.FailedPrecondition,
	ledger.FailedPrecondition: codes.FailedPrecondition, // blocked, frozen, in debt, already reversed
	ledger.Aborted:            codes.Aborted,            // retries exhausted; safe to retry with the same key
	ledger.Unavailable:        codes.Unavailable,        // the database is out of reach; retry with the same key
	ledger.Internal:           codes.Internal,
}

// toStatus converts a domain error into the status a caller sees. Bad input
// carries the offending field as an errdetails.BadRequest violation; anything
// unexpected, and an unreachable database, is logged in full and answered
// with a generic message.
func toStatus(ctx context.Context, log *slog.Logger, method string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status (the api's own checks)
	}
	kind := ledger.KindOf(err)
	code, ok := codeOf[kind]
	if !ok || code == codes.Internal {
		log.ErrorContext(ctx, "internal error", "method", method, "err", err)
		return status.Error(codes.Internal, "internal error")
	}
	msg := callerMessage(err)
	if code == codes.InvalidArgument {
		return badRequest(ledger.FieldOf(err), msg)
	}
	if code == codes.Unavailable {
		// The cause names the database's address and user: logged, not sent.
		log.WarnContext(ctx, "database unavailable", "method", method, "err", err)
		return status.Error(codes.Unavailable, "database unavailable; retry, a write with the same idempotency key")
	}
	st := status.New(code, msg)
	if field := ledger.FieldOf(err); field != "" && code == codes.FailedPrecondition {
		if d, derr := st.WithDetails(&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{
			{Type: kind.String(), Subject: field, Description: msg},
		}}); derr == nil {
			st = d
		}
	}
	return st.Err()
}

// callerMessage is what a caller is told of a refusal: the field of its
// request at fault, then the domain's reason. The domain's operations and its
// own names for fields stay out: they are not the caller's words (a
// reversal's "gift_tx" is the request's gift_transaction_id, a gift's
// "postings[0].account" its viewer).
func callerMessage(err error) string {
	if field := ledger.FieldOf(err); field != "" {
		return field + ": " + ledger.Reason(err)
	}
	return ledger.Reason(err)
}

// badRequest is InvalidArgument naming the field.
func badRequest(field, msg string) error {
	st := status.New(codes.InvalidArgument, msg)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: field, Description: msg},
	}}); err == nil {
		st = d
	}
	return st.Err()
}

// protoFields renames the field a domain error names, where the domain's
// request type calls it otherwise than the protocol does, given as pairs of
// (domain name, request field): a caller is told which of its own fields
// was refused.
func protoFields(err error, renames ...string) error {
	field := ledger.FieldOf(err)
	for i := 0; field != "" && i+1 < len(renames); i += 2 {
		if field == renames[i] {
			return &ledger.Error{Field: renames[i+1], Err: err}
		}
	}
	return err
}
