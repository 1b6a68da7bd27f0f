package economy

import (
	"slices"
	"testing"
)

// The memo of opened gift accounts is keyed by giftPartiesKey; a key shared
// by two gifts with different accounts would skip opening the second's.
func TestGiftPartiesKeyDeterminesAccounts(t *testing.T) {
	base := GiftTerms{Viewer: "v1", Creator: "c1", Currency: "USD", ReleaseDay: "20261128", CreatorDiamonds: "2.5",
		Coins: 5, GiftID: "rose", StreamID: "s1", SentAt: "2026-11-21T12:00:00Z", Diamonds: "2.5"}
	variants := map[string]func(*GiftTerms){
		"same": func(*GiftTerms) {},
		"other gift, stream": func(g *GiftTerms) {
			g.Coins, g.GiftID, g.StreamID, g.Diamonds, g.CreatorDiamonds = 9, "lion", "s2", "4.5", "4.5"
		},
		"other viewer":               func(g *GiftTerms) { g.Viewer = "v2" },
		"other creator":              func(g *GiftTerms) { g.Creator = "c2" },
		"other currency":             func(g *GiftTerms) { g.Currency = "EUR" },
		"other release day":          func(g *GiftTerms) { g.ReleaseDay = "20261129" },
		"with an agency":             func(g *GiftTerms) { g.Agency, g.AgencyDiamonds = "ag1", "0.5" },
		"with another agency":        func(g *GiftTerms) { g.Agency, g.AgencyDiamonds = "ag2", "0.5" },
		"viewer and creator swapped": func(g *GiftTerms) { g.Viewer, g.Creator = g.Creator, g.Viewer },
	}
	type row struct {
		name, key string
		accounts  []string
	}
	var rows []row
	for name, change := range variants {
		g := base
		change(&g)
		var names []string
		for _, a := range giftAccounts(&g) {
			names = append(names, a.Name)
		}
		rows = append(rows, row{name, giftPartiesKey(&g), names})
	}
	for _, a := range rows {
		for _, b := range rows {
			if sameKey, sameAccounts := a.key == b.key, slices.Equal(a.accounts, b.accounts); sameKey != sameAccounts {
				t.Errorf("%s and %s: same key %v, same accounts %v", a.name, b.name, sameKey, sameAccounts)
			}
		}
	}
}
