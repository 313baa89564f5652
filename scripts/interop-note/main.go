// Independent check of kairan's transparency-log formats with Go's golang.org/x/mod/sumdb
// packages (Debian's golang-golang-x-mod-dev), built offline by scripts/interop-note.sh.
//
//	interop-note check DIR   verify what `checkpoint make DIR` wrote:
//	                         - every tree head, inclusion and consistency proof in
//	                           DIR/proofs.txt against sumdb/tlog (TreeHash, CheckRecord,
//	                           CheckTree), and each proof equal to the one sumdb/tlog
//	                           generates (ProveRecord, ProveTree); a corrupted proof refused;
//	                         - DIR/checkpoint.note with sumdb/note.Open and the vkeys,
//	                           its root equal to sumdb/tlog's tree head of DIR/leaves.hex
//	open NOTE VKEY [COSIGNER_VKEY]
//	                         note.Open with those keys; exit status 1 if refused
//	sign DIR                 a checkpoint of DIR/leaves.hex signed by a fresh Go key and
//	                         cosigned by another: DIR/go.note, DIR/go.vkey, DIR/go-witness.vkey
//
// sumdb/note verifies type 0x01 keys only; the type 0x04 cosignature (c2sp.org/tlog-cosignature)
// is checked by the small note.Verifier below, written from the specification.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "interop-note: "+format+"\n", args...)
	os.Exit(1)
}

func lines(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// cosigner verifies c2sp.org/tlog-cosignature v1 (type 0x04) signatures.
type cosigner struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (c *cosigner) Name() string    { return c.name }
func (c *cosigner) KeyHash() uint32 { return c.hash }
func (c *cosigner) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t >= 1<<63 {
		return false
	}
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	return ed25519.Verify(c.key, signed, sig[8:])
}

func keyHash(name string, material []byte) uint32 {
	h := sha256.Sum256(append([]byte(name+"\n"), material...))
	return binary.BigEndian.Uint32(h[:4])
}

func parseCosigner(vkey string) *cosigner {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		fail("cosigner vkey %q", vkey)
	}
	material, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(material) != 33 || material[0] != 0x04 {
		fail("cosigner vkey %q is not type 0x04 Ed25519", vkey)
	}
	hash, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil || uint32(hash) != keyHash(parts[0], material) {
		fail("cosigner vkey %q: key hash does not match", vkey)
	}
	return &cosigner{parts[0], uint32(hash), ed25519.PublicKey(material[1:])}
}

func verifiers(vkeys []string) note.Verifiers {
	var list []note.Verifier
	for i, path := range vkeys {
		text := lines(path)[0]
		if i == 0 {
			v, err := note.NewVerifier(text)
			if err != nil {
				fail("log vkey %s: %v", path, err)
			}
			list = append(list, v)
		} else {
			list = append(list, parseCosigner(text))
		}
	}
	return note.VerifierList(list...)
}

// memory holds sumdb/tlog stored hashes.
type memory []tlog.Hash

func (m *memory) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, index := range indexes {
		if index < 0 || index >= int64(len(*m)) {
			return nil, fmt.Errorf("no stored hash %d", index)
		}
		out[i] = (*m)[index]
	}
	return out, nil
}

func build(dir string) (*memory, int64) {
	m := &memory{}
	leaves := lines(filepath.Join(dir, "leaves.hex"))
	for i, line := range leaves {
		data, err := hex.DecodeString(line)
		if err != nil {
			fail("leaf %d: %v", i, err)
		}
		hashes, err := tlog.StoredHashes(int64(i), data, m)
		if err != nil {
			fail("%v", err)
		}
		*m = append(*m, hashes...)
	}
	return m, int64(len(leaves))
}

func parseHash(text string) tlog.Hash {
	var h tlog.Hash
	if b, err := hex.DecodeString(text); err != nil || len(b) != len(h) {
		fail("bad hash %q", text)
	} else {
		copy(h[:], b)
	}
	return h
}

func parseProof(text string) []tlog.Hash {
	if text == "-" {
		return nil
	}
	var proof []tlog.Hash
	for _, h := range strings.Split(text, ",") {
		proof = append(proof, parseHash(h))
	}
	return proof
}

func equal(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func corrupt(proof []tlog.Hash) []tlog.Hash {
	bad := append([]tlog.Hash(nil), proof...)
	bad[len(bad)/2][7] ^= 0x20
	return bad
}

func number(text string) int64 {
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		fail("bad number %q", text)
	}
	return n
}

func check(dir string) {
	m, size := build(dir)
	roots := map[int64]tlog.Hash{}
	var counts [3]int
	for _, line := range lines(filepath.Join(dir, "proofs.txt")) {
		f := strings.Fields(line)
		switch {
		case f[0] == "root" && len(f) == 3:
			n, want := number(f[1]), parseHash(f[2])
			if got, err := tlog.TreeHash(n, m); err != nil || got != want {
				fail("tree head of size %d: Go says %v (%v), kairan %v", n, got, err, want)
			}
			roots[n] = want
			counts[0]++
		case f[0] == "inclusion" && len(f) == 4:
			index, n, proof := number(f[1]), number(f[2]), parseProof(f[3])
			leaf, err := m.ReadHashes([]int64{tlog.StoredHashIndex(0, index)})
			if err != nil {
				fail("%v", err)
			}
			if err := tlog.CheckRecord(proof, n, roots[n], index, leaf[0]); err != nil {
				fail("inclusion %d in %d refused by Go: %v", index, n, err)
			}
			if goProof, err := tlog.ProveRecord(n, index, m); err != nil || !equal(goProof, proof) {
				fail("inclusion %d in %d: Go generates another proof (%v)", index, n, err)
			}
			if len(proof) > 0 && tlog.CheckRecord(corrupt(proof), n, roots[n], index, leaf[0]) == nil {
				fail("inclusion %d in %d: Go accepts a corrupted proof", index, n)
			}
			counts[1]++
		case f[0] == "consistency" && len(f) == 4:
			old, n, proof := number(f[1]), number(f[2]), parseProof(f[3])
			if old == 0 {
				// sumdb/tlog defines no proof from the empty tree; RFC 9162 implementations use none.
				if len(proof) != 0 {
					fail("consistency 0 to %d is not empty", n)
				}
				continue
			}
			if err := tlog.CheckTree(proof, n, roots[n], old, roots[old]); err != nil {
				fail("consistency %d to %d refused by Go: %v", old, n, err)
			}
			if goProof, err := tlog.ProveTree(n, old, m); err != nil || !equal(goProof, proof) {
				fail("consistency %d to %d: Go generates another proof (%v)", old, n, err)
			}
			if len(proof) > 0 && tlog.CheckTree(corrupt(proof), n, roots[n], old, roots[old]) == nil {
				fail("consistency %d to %d: Go accepts a corrupted proof", old, n)
			}
			counts[2]++
		default:
			fail("bad line %q", line)
		}
	}
	fmt.Printf("sumdb/tlog agrees: %d tree heads, %d inclusion proofs, %d consistency proofs (tree of %d leaves)\n",
		counts[0], counts[1], counts[2], size)

	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint.note"))
	if err != nil {
		fail("%v", err)
	}
	known := verifiers([]string{filepath.Join(dir, "log.vkey"), filepath.Join(dir, "witness.vkey")})
	n, err := note.Open(msg, known)
	if err != nil {
		fail("sumdb/note refuses checkpoint.note: %v", err)
	}
	if len(n.Sigs) != 2 || len(n.UnverifiedSigs) != 0 {
		fail("checkpoint.note: %d verified and %d unverified signatures, want 2 and 0", len(n.Sigs), len(n.UnverifiedSigs))
	}
	body := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	root, _ := tlog.TreeHash(size, m)
	if len(body) != 3 || body[0] != n.Sigs[0].Name || body[1] != strconv.FormatInt(size, 10) ||
		body[2] != base64.StdEncoding.EncodeToString(root[:]) {
		fail("checkpoint text %q is not <origin, %d, %x>", n.Text, size, root)
	}
	fmt.Printf("sumdb/note verifies checkpoint.note: %s at size %s, signed by %s, cosigned by %s\n",
		body[0], body[1], n.Sigs[0].Name, n.Sigs[1].Name)
}

func open(args []string) {
	msg, err := os.ReadFile(args[0])
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, verifiers(args[1:]))
	if err != nil {
		fail("sumdb/note refuses %s: %v", args[0], err)
	}
	if len(n.Sigs) != len(args)-1 {
		fail("%s: %d of %d keys signed", args[0], len(n.Sigs), len(args)-1)
	}
	fmt.Printf("sumdb/note verifies %s (%d signatures)\n", args[0], len(n.Sigs))
}

// cosignerKey signs cosignature/v1 (type 0x04).
type cosignerKey struct {
	cosigner
	private ed25519.PrivateKey
	time    uint64
}

func (c *cosignerKey) Sign(msg []byte) ([]byte, error) {
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", c.time)), msg...)
	sig := make([]byte, 8, 8+ed25519.SignatureSize)
	binary.BigEndian.PutUint64(sig, c.time)
	return append(sig, ed25519.Sign(c.private, signed)...), nil
}

func sign(dir string) {
	m, size := build(dir)
	root, err := tlog.TreeHash(size, m)
	if err != nil {
		fail("%v", err)
	}
	const origin = "go.example/log"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		fail("%v", err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		fail("%v", err)
	}
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		fail("%v", err)
	}
	const witness = "go.example/witness"
	material := append([]byte{0x04}, public...)
	w := &cosignerKey{cosigner{witness, keyHash(witness, material), public}, private, 1700000000}
	text := fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))
	msg, err := note.Sign(&note.Note{Text: text}, signer, w)
	if err != nil {
		fail("%v", err)
	}
	wkey := fmt.Sprintf("%s+%08x+%s", witness, w.hash, base64.StdEncoding.EncodeToString(material))
	for name, content := range map[string][]byte{
		"go.note": msg, "go.vkey": []byte(vkey + "\n"), "go-witness.vkey": []byte(wkey + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			fail("%v", err)
		}
	}
	fmt.Printf("sumdb/note signed go.note:\n%s", bytes.TrimSpace(msg))
	fmt.Println()
}

func main() {
	switch {
	case len(os.Args) == 3 && os.Args[1] == "check":
		check(os.Args[2])
	case len(os.Args) >= 4 && os.Args[1] == "open":
		open(os.Args[2:])
	case len(os.Args) == 3 && os.Args[1] == "sign":
		sign(os.Args[2])
	default:
		fail("usage: interop-note check DIR | open NOTE VKEY [COSIGNER_VKEY] | sign DIR")
	}
}
