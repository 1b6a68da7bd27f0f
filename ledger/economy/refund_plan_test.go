package economy

import (
	"encoding/json"
	"testing"
)

// A refund's retry is matched on the policy asked, which plans recorded
// before RequestedPolicy was kept do not hold: theirs is the policy applied.
func TestRefundPlanAsked(t *testing.T) {
	for _, tt := range []struct {
		name, metadata string
		want           RefundPolicy
	}{
		{"recorded before requested_policy", `{"policy":"debt"}`, OweCoins},
		{"a clawback given up", `{"policy":"loss","requested_policy":"clawback"}`, ClawbackThenLoss},
		{"as asked", `{"policy":"loss","requested_policy":"loss"}`, AbsorbLoss},
	} {
		var plan RefundPlan
		if err := json.Unmarshal([]byte(tt.metadata), &plan); err != nil {
			t.Fatal(err)
		}
		if got := plan.asked(); got != tt.want {
			t.Errorf("%s: asked %q, want %q", tt.name, got, tt.want)
		}
	}
}
