package media

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pressroom.dev/kit/authz"
)

// Publishing and deleting the same bytes wait for the per-hash lock (held
// here by the test), so neither can interleave with the other; other
// hashes are not held up.
func TestHashLockSerialisesUploadAndDelete(t *testing.T) {
	e := newEnv(t, 1<<20)
	ctx := t.Context()
	alice := authz.Principal{UserID: "alice", Roles: []authz.Role{authz.Author}}
	bob := authz.Principal{UserID: "bob", Roles: []authz.Role{authz.Author}}
	img := pngBytes(t, 6, 6, 11)
	a, _, err := e.svc.Upload(ctx, alice, "a.png", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}

	held, release := make(chan struct{}), make(chan struct{})
	released := false
	unlock := func() {
		if !released {
			released = true
			close(release)
		}
	}
	defer unlock() // a failing test must not keep a pool connection forever
	go e.svc.store.WithHashLock(ctx, a.Name.Hash, func(*pgxpool.Conn) error {
		close(held)
		<-release
		return nil
	})
	<-held
	deleted, uploaded := make(chan error, 1), make(chan error, 1)
	go func() { deleted <- e.svc.Delete(ctx, alice, a.ID) }()
	go func() { _, _, err := e.svc.Upload(ctx, bob, "b.png", bytes.NewReader(img)); uploaded <- err }()

	// Another image is not held up by this hash's lock.
	if _, _, err := e.svc.Upload(ctx, alice, "a.png", bytes.NewReader(pngBytes(t, 6, 6, 12))); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-deleted:
		t.Fatalf("delete ran while the hash was locked (%v)", err)
	case err := <-uploaded:
		t.Fatalf("upload published while the hash was locked (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	unlock()
	for _, ch := range []chan error{deleted, uploaded} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("still blocked after the lock was released")
		}
	}
	// Whatever order they ran in, bob's record exists and so does the file.
	if r := e.get("/media/" + a.Name.String()); r.status != http.StatusOK {
		t.Fatalf("bob's image: %d", r.status)
	}
}
