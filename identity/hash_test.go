package identity

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// cmacVectors are the AES-CMAC examples of RFC 4493 (AES-128) and NIST SP
// 800-38B (AES-256), over the first 0, 16, 40 and 64 bytes of one message.
var cmacVectors = []struct {
	key  string
	len  int
	want string
}{
	{"2b7e151628aed2a6abf7158809cf4f3c", 0, "bb1d6929e95937287fa37d129b756746"},
	{"2b7e151628aed2a6abf7158809cf4f3c", 16, "070a16b46b4d4144f79bdd9dd04a287c"},
	{"2b7e151628aed2a6abf7158809cf4f3c", 40, "dfa66747de9ae63030ca32611497c827"},
	{"2b7e151628aed2a6abf7158809cf4f3c", 64, "51f0bebf7e3b9d92fc49741779363cfe"},
	{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 0, "028962f61b7bf89efc6b551f4667d983"},
	{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 16, "28a7023f452e8f82bd4bf28d8c37c35c"},
	{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 40, "aaf3d8f1de5640c232f5b169b9c911e6"},
	{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 64, "e1992190549f6ed5696a2c056c315410"},
}

const cmacMessage = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"

func TestCMACVectors(t *testing.T) {
	msg, _ := hex.DecodeString(cmacMessage)
	for _, v := range cmacVectors {
		key, _ := hex.DecodeString(v.key)
		h, err := newCMACHasher(key)
		if err != nil {
			t.Fatal(err)
		}
		m := string(msg[:v.len])
		// However the message is cut into parts, the tag is the same.
		for cut := 0; cut <= len(m); cut++ {
			for cut2 := cut; cut2 <= len(m); cut2 += 7 {
				if got := h.sum(m[:cut], m[cut:cut2], m[cut2:]).String(); got != v.want {
					t.Fatalf("AES-%d-CMAC of %d bytes cut at %d, %d = %s, want %s", len(key)*8, v.len, cut, cut2, got, v.want)
				}
			}
		}
	}
}

func TestHasherIsCMACOfTheStringForm(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	h, err := NewHasher(key)
	if err != nil {
		t.Fatal(err)
	}
	id := ID{Type: "email", Value: "a@b.c"}
	// openssl mac -cipher AES-128-CBC -macopt hexkey:$(first 16 bytes of HMAC-SHA256(key, label)) CMAC
	if got, want := h.ID(id).String(), "acaac0d2f358f84233279c5da28b0575"; got != want {
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
	for _, bad := range []string{"", "zz", h.ID(id).String()[:31] + "g", h.ID(id).String() + "00"} {
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

// BenchmarkHasherIDBaselineHMAC is what the Hasher computed before it moved to
// AES-CMAC: HMAC-SHA256 of the same identifier, the hash state reused as the
// Hasher reuses its own. It is the same-run baseline for BenchmarkHasherID.
func BenchmarkHasherIDBaselineHMAC(b *testing.B) {
	mac := hmac.New(sha256.New, []byte("0123456789abcdef0123456789abcdef"))
	id := ID{Type: "anonymous_id", Value: "a1b2c3d4-e5f6-4711-9999-abcdefabcdef"}
	buf := make([]byte, 0, 128)
	var sum [sha256.Size]byte
	b.ReportAllocs()
	for b.Loop() {
		mac.Reset()
		buf = append(append(append(buf[:0], id.Type...), ':'), id.Value...)
		mac.Write(buf)
		mac.Sum(sum[:0])
	}
}

func TestRotatedHasherIsTheNewLayerOverTheOld(t *testing.T) {
	k1, k2, k3 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	one, err := NewHasher(k1)
	if err != nil {
		t.Fatal(err)
	}
	same, err := NewRotatedHasher(k1)
	if err != nil {
		t.Fatal(err)
	}
	two, err := NewRotatedHasher(k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	three, err := NewRotatedHasher(k1, k2, k3)
	if err != nil {
		t.Fatal(err)
	}
	alone, err := NewHasher(k2)
	if err != nil {
		t.Fatal(err)
	}
	id := ID{Type: TypeEmail, Value: "ada@example.com"}
	if one.ID(id) != same.ID(id) || one.Check() != same.Check() {
		t.Error("a rotated hasher of one key differs from NewHasher's")
	}
	// What a store holds under the old keys is carried over by Rekey alone.
	if got, want := two.Rekey(one.ID(id)), two.ID(id); got != want {
		t.Errorf("Rekey(old hash) = %v, want the rotated hash %v", got, want)
	}
	if got, want := three.Rekey(two.Profile("prof_1")), three.Profile("prof_1"); got != want {
		t.Errorf("Rekey of a profile hash = %v, want %v", got, want)
	}
	if three.Rekey(two.Check()) != three.Check() {
		t.Error("the check value does not follow the rotation")
	}
	// Every key tells: the new key alone, or the old keys, hash otherwise.
	hashes := map[Hash]string{}
	for name, h := range map[string]*Hasher{"k1": one, "k1,k2": two, "k1,k2,k3": three, "k2": alone} {
		if other, dup := hashes[h.ID(id)]; dup {
			t.Errorf("hashers %s and %s hash alike", name, other)
		}
		hashes[h.ID(id)] = name
		if h.Check() == h.ID(id) || h.Check().IsZero() {
			t.Errorf("hasher %s: check value %v", name, h.Check())
		}
	}
}

func TestNewRotatedHasherRefusesShortKeys(t *testing.T) {
	if _, err := NewRotatedHasher(); !errors.Is(err, ErrInvalid) {
		t.Errorf("no key: err = %v, want ErrInvalid", err)
	}
	_, err := NewRotatedHasher(bytes.Repeat([]byte{1}, 32), []byte("short"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "key 2 of 2") {
		t.Errorf("short second key: err = %v, want ErrInvalid naming key 2 of 2", err)
	}
}
