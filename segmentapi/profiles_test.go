package segmentapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/gdprkit/privacy"
	"github.com/gdprkit/privacy/audience"
	"github.com/gdprkit/privacy/identity"
)

const space = "/v1/spaces/spa_1/collections/"

// get reads path of the Profile API with the access token.
func (a *api) get(path string) answer {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.SetBasicAuth(testToken, "")
	return serve(a.profiles, r)
}

// seed collects a person, ada, with traits, events of every type, an
// email and a group.
func seed(t *testing.T, a *api) {
	t.Helper()
	for _, m := range []struct{ path, body string }{
		{"/v1/identify", `{"messageId":"id-1","userId":"ada","anonymousId":"anon-ada","timestamp":"2026-12-07T09:00:00Z","traits":{"email":"Ada@Example.com","plan":"pro","age":36}}`},
		{"/v1/track", `{"messageId":"tr-1","userId":"ada","timestamp":"2026-12-07T09:01:00Z","event":"Order Completed","properties":{"revenue":249},"context":{"ip":"203.0.113.9"}}`},
		{"/v1/track", `{"messageId":"tr-2","userId":"ada","timestamp":"2026-12-07T09:02:00Z","event":"Viewed"}`},
		{"/v1/page", `{"messageId":"pg-1","userId":"ada","timestamp":"2026-12-07T09:03:00Z","name":"Pricing"}`},
		{"/v1/group", `{"messageId":"gr-1","userId":"ada","timestamp":"2026-12-07T09:04:00Z","groupId":"acme","traits":{"name":"Acme","employees":120}}`},
	} {
		wantStatus(t, a.post(m.path, testWriteKey, m.body), http.StatusOK)
	}
}

func decodeInto[T any](t *testing.T, got answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(got.body, &v); err != nil {
		t.Fatalf("answer %d: %v: %s", got.status, err, got.body)
	}
	return v
}

type traitsWire struct {
	Traits map[string]json.RawMessage `json:"traits"`
	Cursor cursor                     `json:"cursor"`
}

func TestProfilesTraits(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	got := a.get(space + "users/profiles/user_id:ada/traits")
	wantStatus(t, got, http.StatusOK)
	tr := decodeInto[traitsWire](t, got)
	if string(tr.Traits["plan"]) != `"pro"` || string(tr.Traits["age"]) != `36` || len(tr.Traits) != 3 {
		t.Errorf("traits %s: want email, plan and age", got.body)
	}
	if tr.Cursor.HasMore || tr.Cursor.URL != "/v1/spaces/spa_1/collections/users/profiles/user_id:ada/traits" {
		t.Errorf("cursor %+v", tr.Cursor)
	}
	// Found by email, lower-cased, as Segment looks it up.
	wantStatus(t, a.get(space+"users/profiles/email:ada@example.com/traits"), http.StatusOK)

	got = a.get(space + "users/profiles/user_id:ada/traits?verbose=true&include=plan,age")
	wantStatus(t, got, http.StatusOK)
	verbose := decodeInto[struct {
		Traits map[string]verboseTrait `json:"traits"`
	}](t, got)
	if p := verbose.Traits["plan"]; len(verbose.Traits) != 2 || p.Value != "pro" || p.SourceID != testSource || p.UpdatedAt.IsZero() {
		t.Errorf("verbose traits %s: want plan and age with value, source_id and updated_at", got.body)
	}

	// Paged one at a time: every trait once, in key order.
	var keys []string
	next := ""
	for i := 0; ; i++ {
		got = a.get(space + "users/profiles/user_id:ada/traits?limit=1&next=" + next)
		wantStatus(t, got, http.StatusOK)
		page := decodeInto[traitsWire](t, got)
		for k := range page.Traits {
			keys = append(keys, k)
		}
		if !page.Cursor.HasMore {
			break
		}
		next = page.Cursor.Next
		if i > 5 {
			t.Fatal("paging does not end")
		}
	}
	if strings.Join(keys, ",") != "age,email,plan" {
		t.Errorf("paged traits %v", keys)
	}
}

func TestProfilesAudiencesAsTraits(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	if err := a.c.DefineAudience(context.Background(), audience.Definition{Key: "pro_users", Query: "trait('plan') = 'pro'"}); err != nil {
		t.Fatal(err)
	}
	all := decodeInto[traitsWire](t, a.get(space+"users/profiles/user_id:ada/traits"))
	if string(all.Traits["pro_users"]) != "true" || string(all.Traits["plan"]) != `"pro"` {
		t.Errorf("traits %v: want the person's traits and the audience", all.Traits)
	}
	aud := decodeInto[traitsWire](t, a.get(space+"users/profiles/user_id:ada/traits?class=audience"))
	if len(aud.Traits) != 1 || string(aud.Traits["pro_users"]) != "true" {
		t.Errorf("class=audience: %v, want only the audience", aud.Traits)
	}
	computed := decodeInto[traitsWire](t, a.get(space+"users/profiles/user_id:ada/traits?class=computed_trait"))
	if len(computed.Traits) != 0 {
		t.Errorf("class=computed_trait: %v, want none", computed.Traits)
	}
}

type eventsWire struct {
	Data   []map[string]any `json:"data"`
	Cursor cursor           `json:"cursor"`
}

func TestProfilesEvents(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	got := a.get(space + "users/profiles/user_id:ada/events")
	wantStatus(t, got, http.StatusOK)
	ev := decodeInto[eventsWire](t, got)
	var ids []string
	for _, e := range ev.Data {
		ids = append(ids, e["message_id"].(string))
		if e["source_id"] != testSource {
			t.Errorf("event %v: want source_id %s", e, testSource)
		}
	}
	if strings.Join(ids, ",") != "gr-1,pg-1,tr-2,tr-1" {
		t.Errorf("events %v: want newest first", ids)
	}
	first := ev.Data[3]
	if first["type"] != "track" || first["event"] != "Order Completed" || first["timestamp"] != "2026-12-07T09:01:00Z" ||
		first["properties"].(map[string]any)["revenue"] != float64(249) || first["context"].(map[string]any)["ip"] != "203.0.113.9" {
		t.Errorf("event %v", first)
	}
	if pg := ev.Data[1]; pg["type"] != "page" || pg["name"] != "Pricing" {
		t.Errorf("page event %v", pg)
	}
	// Segment's filters.
	for query, want := range map[string]string{
		"?sort=asc&limit=2":                 "tr-1,tr-2",
		"?include=Viewed":                   "tr-2",
		"?exclude=Viewed,Pricing,acme":      "tr-1",
		"?start=2026-12-07T09:02:00Z":       "gr-1,pg-1,tr-2",
		"?end=2026-12-07T09:02:00Z":         "tr-1",
		"?start=2026-12-07&end=2026-12-08":  "gr-1,pg-1,tr-2,tr-1",
		"?sort=asc&start=2026-12-07T09:01Z": "",
	} {
		got := a.get(space + "users/profiles/user_id:ada/events" + query)
		if query == "?sort=asc&start=2026-12-07T09:01Z" {
			wantStatus(t, got, http.StatusBadRequest) // not ISO 8601 with seconds
			continue
		}
		wantStatus(t, got, http.StatusOK)
		var ids []string
		for _, e := range decodeInto[eventsWire](t, got).Data {
			ids = append(ids, e["message_id"].(string))
		}
		if strings.Join(ids, ",") != want {
			t.Errorf("events%s = %v, want %s", query, ids, want)
		}
	}
	// Paging by next.
	page := decodeInto[eventsWire](t, a.get(space+"users/profiles/user_id:ada/events?limit=3"))
	if !page.Cursor.HasMore || page.Cursor.Next == "" {
		t.Fatalf("cursor %+v: want more", page.Cursor)
	}
	rest := decodeInto[eventsWire](t, a.get(space+"users/profiles/user_id:ada/events?limit=3&next="+page.Cursor.Next))
	if len(rest.Data) != 1 || rest.Data[0]["message_id"] != "tr-1" || rest.Cursor.HasMore {
		t.Errorf("second page %+v", rest)
	}
}

func TestProfilesExternalIDsLinksMetadata(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	got := a.get(space + "users/profiles/user_id:ada/external_ids")
	wantStatus(t, got, http.StatusOK)
	x := decodeInto[struct {
		Data []wireExternalID `json:"data"`
	}](t, got)
	types := map[string]string{}
	for _, e := range x.Data {
		types[e.Type] = e.ID
		if e.Collection != "users" || e.Encoding != "none" || e.CreatedAt.IsZero() || e.FirstMessageID != "id-1" {
			t.Errorf("external id %+v", e)
		}
	}
	if types["user_id"] != "ada" || types["email"] != "ada@example.com" || types["anonymous_id"] != "anon-ada" {
		t.Errorf("external ids %v", types)
	}
	only := decodeInto[struct {
		Data []wireExternalID `json:"data"`
	}](t, a.get(space+"users/profiles/user_id:ada/external_ids?include=email"))
	if len(only.Data) != 1 || only.Data[0].Type != "email" {
		t.Errorf("include=email: %+v", only.Data)
	}

	links := decodeInto[linksAnswer](t, a.get(space+"users/profiles/user_id:ada/links"))
	if len(links.Data) != 1 || links.Data[0].ToCollection != "accounts" || len(links.Data[0].ExternalIDs) != 1 ||
		links.Data[0].ExternalIDs[0].ID != "acme" || links.Data[0].ExternalIDs[0].Type != "group_id" {
		t.Errorf("links %+v", links)
	}

	got = a.get(space + "users/profiles/user_id:ada/metadata")
	wantStatus(t, got, http.StatusOK)
	md := decodeInto[map[string]map[string]any](t, got)["metadata"]
	if md["first_message_id"] != "id-1" || md["last_message_id"] != "gr-1" || md["created_at"] == nil || md["expires_at"] != nil {
		t.Errorf("metadata %v", md)
	}
	if _, ok := md["expires_at"]; !ok {
		t.Errorf("metadata %v: want expires_at null, as Segment's", md)
	}
	v1 := md["version"].(float64)
	rc, err := a.c.Rectify(context.Background(), user("ada"), map[string]any{"plan": "team"})
	if err != nil {
		t.Fatal(err)
	}
	md = decodeInto[map[string]map[string]any](t, a.get(space+"users/profiles/user_id:ada/metadata"))["metadata"]
	if md["version"].(float64) != float64(rc.ProfileVersion) || md["version"].(float64) <= v1 {
		t.Errorf("metadata version %v after a rectification with receipt version %d (was %v)", md["version"], rc.ProfileVersion, v1)
	}
}

func TestProfilesAccounts(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	tr := decodeInto[traitsWire](t, a.get(space+"accounts/profiles/group_id:acme/traits"))
	if string(tr.Traits["name"]) != `"Acme"` || string(tr.Traits["employees"]) != "120" {
		t.Errorf("account traits %v", tr.Traits)
	}
	x := decodeInto[struct {
		Data []wireExternalID `json:"data"`
	}](t, a.get(space+"accounts/profiles/group_id:acme/external_ids"))
	if len(x.Data) != 1 || x.Data[0].Type != "group_id" || x.Data[0].Collection != "accounts" {
		t.Errorf("account external ids %+v", x.Data)
	}
	for _, ep := range []string{"events", "links", "metadata"} {
		wantStatus(t, a.get(space+"accounts/profiles/group_id:acme/"+ep), http.StatusOK)
	}
	for path, status := range map[string]int{
		space + "accounts/profiles/group_id:nope/traits": http.StatusNotFound,
		space + "accounts/profiles/user_id:ada/traits":   http.StatusBadRequest,
		space + "things/profiles/user_id:ada/traits":     http.StatusNotFound,
	} {
		wantStatus(t, a.get(path), status)
	}
}

func TestProfilesErrors(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	const secret = "ada@example.com"
	for path, want := range map[string]struct {
		status int
		code   string
	}{
		space + "users/profiles/user_id:nobody/traits":                    {404, "not_found"},
		space + "users/profiles/" + secret + "/traits":                    {400, "validation_error"}, // no type
		space + "users/profiles/user_id:ada/traits?limit=201":             {400, "validation_error"},
		space + "users/profiles/user_id:ada/events?limit=101":             {400, "validation_error"},
		space + "users/profiles/user_id:ada/events?limit=x":               {400, "validation_error"},
		space + "users/profiles/user_id:ada/events?sort=up":               {400, "validation_error"},
		space + "users/profiles/user_id:ada/traits?verbose=maybe":         {400, "validation_error"},
		space + "users/profiles/user_id:ada/traits?class=x":               {400, "validation_error"},
		space + "users/profiles/user_id:ada/events?next=" + secret:        {400, "validation_error"},
		space + "users/profiles/user_id:ada/events?start=" + secret:       {400, "validation_error"},
		space + "users/profiles/user_id:ada/bogus":                        {404, "not_found"},
		space + "users/profiles/email:" + secret + "/traits?limit=0":      {400, "validation_error"},
		"/v1/spaces/spa_1/collections/users/profiles/user_id:ada/traits/": {404, "not_found"},
	} {
		got := a.get(path)
		wantStatus(t, got, want.status)
		e := decodeInto[profileErrorBody](t, got)
		if e.Error.Code != want.code || e.Error.Message == "" {
			t.Errorf("%s: answer %s, want code %s", path, got.body, want.code)
		}
		a.noneQuoted(t, got, secret)
	}
	// Auth: no token, a wrong one, a write key.
	for _, key := range []string{"", "tok_wrong", testWriteKey} {
		r := httptest.NewRequest(http.MethodGet, space+"users/profiles/user_id:ada/traits", nil)
		if key != "" {
			r.SetBasicAuth(key, "")
		}
		got := serve(a.profiles, r)
		wantStatus(t, got, http.StatusUnauthorized)
		if e := decodeInto[profileErrorBody](t, got); e.Error.Code != "authentication_error" {
			t.Errorf("key %q: %s", key, got.body)
		}
	}
	// WithSpace: another space is not found.
	a.profiles = NewProfiles(a.c, WithAccessToken(testToken), WithSpace("spa_1"))
	wantStatus(t, a.get(space+"users/profiles/user_id:ada/traits"), http.StatusOK)
	wantStatus(t, a.get("/v1/spaces/spa_2/collections/users/profiles/user_id:ada/traits"), http.StatusNotFound)
}

func TestProfilesGoneAfterErasure(t *testing.T) {
	a := newAPI(t)
	seed(t, a)
	if _, err := a.c.Apply(context.Background(), privacy.Request{Type: privacy.DeleteOnly, Subjects: []identity.ID{user("ada")}}); err != nil {
		t.Fatal(err)
	}
	for _, ep := range []string{"traits", "events", "external_ids", "links", "metadata"} {
		for _, id := range []string{"user_id:ada", "email:ada@example.com", "anonymous_id:anon-ada"} {
			got := a.get(space + "users/profiles/" + id + "/" + ep)
			wantStatus(t, got, http.StatusNotFound)
		}
	}
}

func TestProfilesLimitBounds(t *testing.T) {
	a := newAPI(t)
	var b strings.Builder
	b.WriteString(`{"userId":"u1","traits":{`)
	for i := range 250 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"t` + strconv.Itoa(1000+i) + `":1`)
	}
	b.WriteString(`}}`)
	wantStatus(t, a.post("/v1/identify", testWriteKey, b.String()), http.StatusOK)
	page := decodeInto[traitsWire](t, a.get(space+"users/profiles/user_id:u1/traits?limit=200"))
	if len(page.Traits) != 200 || !page.Cursor.HasMore {
		t.Errorf("limit=200: %d traits, has_more %v", len(page.Traits), page.Cursor.HasMore)
	}
	if d := decodeInto[traitsWire](t, a.get(space+"users/profiles/user_id:u1/traits")); len(d.Traits) != DefaultProfileLimit {
		t.Errorf("default page: %d traits, want %d", len(d.Traits), DefaultProfileLimit)
	}
}
