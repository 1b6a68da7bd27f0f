// Package migrations holds the numbered SQL files that build the schema.
// They are embedded so the binary and the tests apply exactly the same files;
// a file is never edited once landed — a change is a new file.
package migrations

import "embed"

// FS holds NNNN_name.sql files, applied in name order.
//
//go:embed *.sql
var FS embed.FS
