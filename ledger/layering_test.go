package ledger

import (
	"os/exec"
	"strings"
	"testing"
)

// The domain must not depend on a database driver or a transport.
func TestDomainImportsNoInfrastructure(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/jackc/", "google.golang.org/grpc", "github.com/cockroachdb/"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("ledger depends on %s", dep)
			}
		}
	}
}
