package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"testing"
)

func TestHasherIsHMACSHA256OfTheStringForm(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	h, err := NewHasher(key)
	if err != nil {
		t.Fatal(err)
	}
	id := ID{Type: "email", Value: "a@b.c"}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("email:a@b.c"))
	if got, want := h.ID(id), Hash(mac.Sum(nil)); got != want {
		t.Fatalf("ID hash = %s, want %s", got, want)
	}
	if h.ID(id) == h.ID(ID{Type: "email", Value: "a@b.d"}) || h.ID(id) == h.Profile("email:a@b.c") {
		t.Fatal("different inputs hash alike")
	}
	other, _ := NewHasher([]byte("another key, also long enough"))
	if other.ID(id) == h.ID(id) {
		t.Fatal("the key does not matter")
	}
	back, err := ParseHash(h.ID(id).String())
	if err != nil || back != h.ID(id) {
		t.Fatalf("ParseHash(String()) = %s, %v", back, err)
	}
	for _, bad := range []string{"", "zz", h.ID(id).String()[:63] + "g"} {
		if _, err := ParseHash(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseHash(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := NewHasher(make([]byte, MinKeyLength-1)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short key: %v, want ErrInvalid", err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = h.ID(id) }); n != 0 && !raceEnabled {
		t.Fatalf("ID allocates %v times per call", n)
	}
}

func BenchmarkHasherID(b *testing.B) {
	h, _ := NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	id := ID{Type: "anonymous_id", Value: "a1b2c3d4-e5f6-4711-9999-abcdefabcdef"}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.ID(id)
	}
}

func TestHashTextRoundTrip(t *testing.T) {
	h, _ := NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	in := h.ID(ID{Type: "email", Value: "a@b.c"})
	b, err := in.MarshalText()
	if err != nil || string(b) != in.String() {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	var out Hash
	if err := out.UnmarshalText(b); err != nil || out != in {
		t.Fatalf("UnmarshalText = %s, %v", out, err)
	}
	if err := out.UnmarshalText([]byte("nothex")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("UnmarshalText(bad) = %v", err)
	}
}
