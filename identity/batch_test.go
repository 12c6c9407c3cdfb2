package identity

import (
	"strconv"
	"testing"
	"time"
)

// TestLookupAllAnswersEachIdentifier: LookupAll answers every identifier
// in order, for one (Lookup), a few (the pooled buffers) and more than the
// buffers hold, with repeats; a lookup after it does not see the answers
// of the one before (the buffers are cleared and reused).
func TestLookupAllAnswersEachIdentifier(t *testing.T) {
	ctx := t.Context()
	res, g := newResolver(t, nil), NewMemGraph()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	linked := map[ID]ProfileID{}
	for i := range 12 {
		u := uid("u" + strconv.Itoa(i))
		p := collect(t, res, g, now, "m"+strconv.Itoa(i), u)
		if p.Profile == "" || lookup(t, g, u) != p.Profile {
			t.Fatalf("premise: %v is linked to %q, its plan's profile %q", u, lookup(t, g, u), p.Profile)
		}
		linked[u] = p.Profile
	}
	for _, n := range []int{1, 2, 8, 9, 24} {
		var ids []ID
		for i := range n {
			if i%3 == 2 {
				ids = append(ids, uid("nobody"+strconv.Itoa(i))) // linked to none
				continue
			}
			ids = append(ids, uid("u"+strconv.Itoa(i%12)))
		}
		got, err := LookupAll(ctx, g, ids, nil)
		if err != nil || len(got) != n {
			t.Fatalf("LookupAll of %d identifiers: %d matches, %v", n, len(got), err)
		}
		for i, m := range got {
			if m.ID != ids[i] || m.Profile != linked[ids[i]] {
				t.Errorf("LookupAll of %d: match %d is %+v; want %v linked to %q", n, i, m, ids[i], linked[ids[i]])
			}
		}
	}
}
