package article

import (
	"context"
	"errors"
	"github.com/jackc/pgx/v5"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/encoding/protojson"

	articlev1 "pressroom.dev/proto/gen/article/v1"
	eventsv1 "pressroom.dev/proto/gen/events/v1"
)

func kindOf(err error) Kind {
	var de *Error
	if errors.As(err, &de) {
		return de.Kind
	}
	return 0
}

func TestSlugsFollowTitleUntilPublished(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := authorA.principal()

	first, err := e.svc.Create(ctx, a, Fields{Title: ptr("Hello World")})
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.svc.Create(ctx, a, Fields{Title: ptr("Hello, world!")})
	if err != nil {
		t.Fatal(err)
	}
	if first.Slug != "hello-world" || second.Slug != "hello-world-2" {
		t.Fatalf("slugs = %q, %q; want hello-world, hello-world-2", first.Slug, second.Slug)
	}
	// Saving the same title keeps the suffixed slug.
	if got, err := e.svc.Update(ctx, a, second.ID, Fields{Title: ptr("Hello, world!")}); err != nil || got.Slug != "hello-world-2" {
		t.Fatalf("re-save: slug %q err %v", got.Slug, err)
	}
	// A draft's generated slug follows its title.
	got, err := e.svc.Update(ctx, a, first.ID, Fields{Title: ptr("Goodbye World")})
	if err != nil || got.Slug != "goodbye-world" {
		t.Fatalf("draft retitle: slug %q err %v", got.Slug, err)
	}
	// Once published it is stable...
	if _, err := e.svc.Publish(ctx, a, first.ID); err != nil {
		t.Fatal(err)
	}
	got, err = e.svc.Update(ctx, a, first.ID, Fields{Title: ptr("Another Title")})
	if err != nil || got.Slug != "goodbye-world" {
		t.Fatalf("published retitle: slug %q err %v", got.Slug, err)
	}
	// ...unless changed explicitly; a taken slug is a conflict.
	if _, err := e.svc.Update(ctx, a, first.ID, Fields{Slug: ptr("hello-world-2")}); kindOf(err) != KindConflict {
		t.Fatalf("taken slug: got %v, want a conflict", err)
	}
	if got, err = e.svc.Update(ctx, a, first.ID, Fields{Slug: ptr("another-title")}); err != nil || got.Slug != "another-title" {
		t.Fatalf("explicit slug: %q %v", got.Slug, err)
	}
	// A hand-set slug no longer follows the title.
	if got, err = e.svc.Update(ctx, a, second.ID, Fields{Slug: ptr("mine")}); err != nil || got.Slug != "mine" {
		t.Fatalf("hand-set slug: %q %v", got.Slug, err)
	}
	if got, err = e.svc.Update(ctx, a, second.ID, Fields{Title: ptr("Different")}); err != nil || got.Slug != "mine" {
		t.Fatalf("hand-set slug changed to %q (%v)", got.Slug, err)
	}
	if _, err := e.svc.Create(ctx, a, Fields{Title: ptr("X"), Slug: ptr("Not A Slug")}); kindOf(err) != KindInvalid {
		t.Fatalf("bad slug: got %v, want invalid", err)
	}
	if c, err := e.svc.Create(ctx, a, Fields{Title: ptr("!!!")}); err != nil || c.Slug != "article" {
		t.Fatalf("symbol-only title: %q %v", c.Slug, err)
	}
}

func TestValidationErrorsSayWhatToFix(t *testing.T) {
	e := newEnv(t)
	_, err := e.client.CreateArticle(context.Background(), req(t, e, authorA, &articlev1.CreateArticleRequest{
		Title: " ", CoverMedia: "javascript:alert(1)", BodyMarkdown: strings.Repeat("x", MaxBodyBytes+1)}))
	if codeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	for _, want := range []string{"title is required", "cover_media", "body_markdown"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	_, err = e.client.GetArticle(context.Background(), req(t, e, anonymous, &articlev1.GetArticleRequest{Key: &articlev1.GetArticleRequest_Id{Id: "nope"}}))
	if codeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "UUID") {
		t.Fatalf("bad id: got %v", err)
	}
	_, err = e.client.ListArticles(context.Background(), req(t, e, anonymous, &articlev1.ListArticlesRequest{PageSize: 1000}))
	if codeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("page_size 1000: got %v", err)
	}
	_, err = e.client.ListArticles(context.Background(), req(t, e, anonymous, &articlev1.ListArticlesRequest{PageToken: "garbage"}))
	if codeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("bad token: got %v", err)
	}
}

func TestListPagesNewestFirstWithFilters(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var published []string
	for i := range 7 {
		c := authorA
		if i%2 == 1 {
			c = authorB
		}
		a, err := e.svc.Create(ctx, c.principal(), Fields{Title: ptr("Article")})
		if err != nil {
			t.Fatal(err)
		}
		if i != 3 { // one draft
			if _, err := e.svc.Publish(ctx, c.principal(), a.ID); err != nil {
				t.Fatal(err)
			}
			published = append([]string{a.ID}, published...)
		}
	}
	var seen []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := e.client.ListArticles(ctx, req(t, e, anonymous, &articlev1.ListArticlesRequest{PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Msg.Articles) > 2 {
			t.Fatalf("page of %d > page_size 2", len(resp.Msg.Articles))
		}
		for _, a := range resp.Msg.Articles {
			seen = append(seen, a.Id)
		}
		if token = resp.Msg.NextPageToken; token == "" {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if strings.Join(seen, ",") != strings.Join(published, ",") {
		t.Fatalf("anonymous listing\n got %v\nwant %v (newest published first)", seen, published)
	}
	resp, err := e.client.ListArticles(ctx, req(t, e, admin, &articlev1.ListArticlesRequest{AuthorId: authorB.id, Status: articlev1.ArticleStatus_ARTICLE_STATUS_DRAFT}))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Msg.Articles) != 1 || resp.Msg.Articles[0].AuthorId != authorB.id || resp.Msg.Articles[0].Status != articlev1.ArticleStatus_ARTICLE_STATUS_DRAFT {
		t.Fatalf("admin filter author B drafts: %v", resp.Msg.Articles)
	}
	resp, err = e.client.ListArticles(ctx, req(t, e, authorA, &articlev1.ListArticlesRequest{Status: articlev1.ArticleStatus_ARTICLE_STATUS_DRAFT}))
	if err != nil || len(resp.Msg.Articles) != 0 {
		t.Fatalf("author A must not see B's draft: %v %v", resp.Msg.GetArticles(), err)
	}
}

// TestEventsAreWrittenWithTheirChange checks each state change leaves
// exactly one outbox row with a complete payload, and no-op calls none.
func TestEventsAreWrittenWithTheirChange(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, err := e.svc.Create(ctx, authorA.principal(), Fields{Title: ptr("Evented")})
	if err != nil {
		t.Fatal(err)
	}
	if n := e.outboxCount(t, "true"); n != 0 {
		t.Fatalf("creating a draft wrote %d events", n)
	}
	for range 2 { // the second publish is a no-op
		if _, err := e.svc.Publish(ctx, authorA.principal(), a.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.outboxCount(t, "subject = $1", SubjectPublished); n != 1 {
		t.Fatalf("publish wrote %d articles.published events, want exactly 1", n)
	}
	var payload []byte
	if err := e.pool.QueryRow(ctx, `SELECT payload FROM outbox WHERE subject = $1`, SubjectPublished).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	var ev eventsv1.ArticleEvent
	if err := protojson.Unmarshal(payload, &ev); err != nil {
		t.Fatalf("payload is not protojson ArticleEvent: %v\n%s", err, payload)
	}
	if ev.SchemaVersion != 1 || ev.EventId == "" || ev.Type != SubjectPublished || ev.ArticleId != a.ID ||
		ev.Slug != "evented" || ev.Title != "Evented" || ev.AuthorId != authorA.id || ev.AuthorName == "" ||
		ev.Url != "https://example.com/articles/evented" || ev.OccurredAt == nil {
		t.Fatalf("incomplete event: %v", &ev)
	}
	if _, err := e.svc.Unpublish(ctx, authorA.principal(), a.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delete(ctx, authorA.principal(), a.ID); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{SubjectUnpublished, SubjectDeleted} {
		if n := e.outboxCount(t, "subject = $1", s); n != 1 {
			t.Fatalf("%d %s events, want 1", n, s)
		}
	}
}

// TestFailedTransactionLeavesNoEvent makes the commit itself fail (a
// deferred trigger raises at COMMIT, after the article row and the outbox
// row were written) and checks neither survives.
func TestFailedTransactionLeavesNoEvent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, err := e.svc.Create(ctx, authorA.principal(), Fields{Title: ptr("Doomed")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.pool.Exec(ctx, `
		CREATE FUNCTION fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected commit failure'; END $$;
		CREATE CONSTRAINT TRIGGER fail_commit AFTER INSERT ON outbox
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_commit();`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Publish(ctx, authorA.principal(), a.ID); err == nil || !strings.Contains(err.Error(), "injected commit failure") {
		t.Fatalf("publish: got %v, want the injected failure", err)
	}
	if err := e.svc.Delete(ctx, authorA.principal(), a.ID); err == nil {
		t.Fatal("delete succeeded despite the failing commit")
	}
	got, err := e.svc.Get(ctx, authorA.principal(), a.ID, "")
	if err != nil {
		t.Fatalf("article vanished with the failed delete: %v", err)
	}
	if got.Status != StatusDraft || got.PublishedAt != nil {
		t.Fatalf("failed publish changed the article: %+v", got)
	}
	if n := e.outboxCount(t, "true"); n != 0 {
		t.Fatalf("failed transactions left %d events", n)
	}
	// With the fault gone the same call leaves exactly one event.
	if _, err := e.pool.Exec(ctx, `DROP TRIGGER fail_commit ON outbox`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Publish(ctx, authorA.principal(), a.ID); err != nil {
		t.Fatal(err)
	}
	if n := e.outboxCount(t, "true"); n != 1 {
		t.Fatalf("publish left %d events, want 1", n)
	}
}

// TestEventCarriesRequestTrace: the outbox row stores the caller's trace
// context, so the relay's publish joins the request's trace.
func TestEventCarriesRequestTrace(t *testing.T) {
	e := newEnv(t)
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	otel.SetTextMapPropagator(propagation.TraceContext{})
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	a, err := e.svc.Create(ctx, authorA.principal(), Fields{Title: ptr("Traced")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Publish(ctx, authorA.principal(), a.ID); err != nil {
		t.Fatal(err)
	}
	span.End()
	var tp2 string
	if err := e.pool.QueryRow(ctx, `SELECT headers->>'traceparent' FROM outbox`).Scan(&tp2); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tp2, span.SpanContext().TraceID().String()) {
		t.Fatalf("traceparent %q does not carry trace %s", tp2, span.SpanContext().TraceID())
	}
}

// Creating an article must not scan the whole archive to find a free slug:
// the suffix lookup has to be answerable from an index, whatever the plan.
func TestFreeSlugLookupUsesAnIndex(t *testing.T) {
	e := newEnv(t)
	plan := e.genericPlan(t, "SET LOCAL enable_seqscan = off", "free_slug(text)", freeSlugSQL, "('hello-world')")
	if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "articles_slug_bytes") {
		t.Fatalf("the free-slug lookup is not served by articles_slug_bytes (even a generic plan must be):\n%s", plan)
	}
}

// genericPlan prepares sql as stmt ("name(types)") in a transaction with
// settings and a forced generic plan, and returns EXPLAIN EXECUTE name args.
func (e *env) genericPlan(t *testing.T, settings, stmt, sql, args string) string {
	t.Helper()
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	if settings != "" {
		if _, err := tx.Exec(ctx, settings); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Exec(ctx, "PREPARE "+stmt+" AS "+sql); err != nil {
		t.Fatal(err)
	}
	name := stmt[:strings.Index(stmt, "(")]
	rows, err := tx.Query(ctx, "EXPLAIN EXECUTE "+name+args)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	// A prepared statement outlives the transaction; the next call may reuse the name.
	if _, err := tx.Exec(ctx, "DEALLOCATE "+name); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestSlugSuffixCannotBePoisoned: an explicit "<base>-999999" (the largest
// suffix the lookup counts) must not stop generated slugs for that title; the
// numbering falls back to random suffixes instead of failing for good.
func TestSlugSuffixCannotBePoisoned(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	long := strings.Repeat("abcdefghij ", 7) + "abcdefghijk and more" // base cut to exactly MaxSlugLen-8 bytes
	for _, title := range []string{"Bar", long} {
		base := baseSlug(title)
		if title == long && len(base) != MaxSlugLen-8 {
			t.Fatalf("long base is %d bytes, want %d", len(base), MaxSlugLen-8)
		}
		if _, err := e.svc.Create(ctx, authorB.principal(), Fields{Title: ptr(title)}); err != nil {
			t.Fatal(err)
		}
		poison, err := e.svc.Create(ctx, authorB.principal(), Fields{Title: ptr("Poison"), Slug: ptr(base + "-999999")})
		if err != nil {
			t.Fatal(err)
		}
		taken := map[string]bool{base: true, poison.Slug: true}
		for i := range 2 {
			a, err := e.svc.Create(ctx, authorA.principal(), Fields{Title: ptr(title)})
			if err != nil {
				t.Fatalf("%q: create #%d after %q: %v", base, i+1, poison.Slug, err)
			}
			if taken[a.Slug] {
				t.Fatalf("%q: create #%d got slug %q, already in use", base, i+1, a.Slug)
			}
			if err := ValidateSlug(a.Slug); err != nil || !isSuffixOf(a.Slug, base) {
				t.Fatalf("%q: create #%d got slug %q: not base plus a numeric suffix (%v)", base, i+1, a.Slug, err)
			}
			taken[a.Slug] = true
			// Re-saving the unchanged title keeps the fallback slug.
			got, err := e.svc.Update(ctx, authorA.principal(), a.ID, Fields{Title: ptr(title)})
			if err != nil {
				t.Fatal(err)
			}
			if got.Slug != a.Slug {
				t.Fatalf("%q: re-saving the title moved slug %q to %q", base, a.Slug, got.Slug)
			}
		}
	}
}

// TestSlugRetryDrawsRandomSuffix: when the lookup offers again a slug the
// insert just refused (numbering is stuck), withFreeSlug draws a random
// suffix, a fresh one on every further retry.
func TestSlugRetryDrawsRandomSuffix(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.svc.Create(ctx, authorA.principal(), Fields{Title: ptr("Bar")}); err != nil {
		t.Fatal(err)
	}
	var tried []string
	err := e.svc.store.InTx(ctx, func(tx pgx.Tx) error {
		return withFreeSlug(ctx, tx, "bar", func(slug string) error {
			tried = append(tried, slug)
			return errSlugTaken // as if each candidate were taken by a row the lookup missed
		})
	})
	if kindOf(err) != KindConflict || len(tried) != maxSlugRetries {
		t.Fatalf("got %v after %d tries %v; want a conflict after %d", err, len(tried), tried, maxSlugRetries)
	}
	if tried[0] != "bar-2" {
		t.Fatalf("first try %q, want bar-2", tried[0])
	}
	seen := map[string]bool{}
	for _, s := range tried[1:] {
		if !isSuffixOf(s, "bar") || len(s) != len("bar-")+7 || seen[s] {
			t.Fatalf("retries %v: want a fresh random 7-digit suffix each time", tried[1:])
		}
		seen[s] = true
	}
}

// A cover is a media file and nothing else: a path that only starts with
// /media/ can name any route of the site once the browser resolves it.
func TestCoverMustBeAMediaFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	good := "/media/" + strings.Repeat("ab", 32) + ".png"
	if _, err := e.client.CreateArticle(ctx, req(t, e, authorA, &articlev1.CreateArticleRequest{Title: "Good", CoverMedia: good})); err != nil {
		t.Fatalf("a media file as cover: %v", err)
	}
	for _, bad := range []string{"/media/../auth/renew", "/media/%2e%2e/auth/renew", "/media/api/items",
		"/media/" + strings.Repeat("ab", 32) + ".png?x", "https://evil.example/x.png", "/auth/renew"} {
		_, err := e.client.CreateArticle(ctx, req(t, e, authorA, &articlev1.CreateArticleRequest{Title: "Bad", CoverMedia: bad}))
		if codeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("cover %q: got %v, want InvalidArgument", bad, err)
		}
	}
}

// The byline never carries the author's e-mail address.
func TestBylineNeverShowsAnEmailAddress(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := connect.NewRequest(&articlev1.CreateArticleRequest{Title: "Nameless"})
	tok, err := e.signer.Sign(authorA.id, "nameless@example.com", "", authorA.roles)
	if err != nil {
		t.Fatal(err)
	}
	r.Header().Set("Authorization", "Bearer "+tok)
	res, err := e.client.CreateArticle(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Msg.GetArticle().GetAuthorName(); strings.Contains(n, "@") {
		t.Fatalf("byline %q shows an e-mail address", n)
	}
}

// An author who lost the role no longer lists the drafts they wrote, just
// as they can no longer open or edit them.
func TestDemotedAuthorNoLongerListsTheirDrafts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.client.CreateArticle(ctx, req(t, e, authorA, &articlev1.CreateArticleRequest{Title: "Secret draft"})); err != nil {
		t.Fatal(err)
	}
	res, err := e.client.ListArticles(ctx, req(t, e, authorA, &articlev1.ListArticlesRequest{}))
	if err != nil || len(res.Msg.GetArticles()) != 1 {
		t.Fatalf("the author lists %d drafts (%v), want 1", len(res.Msg.GetArticles()), err)
	}
	demoted := caller{name: "demoted", id: authorA.id, roles: []string{"reader"}}
	for _, status := range []articlev1.ArticleStatus{articlev1.ArticleStatus_ARTICLE_STATUS_UNSPECIFIED, articlev1.ArticleStatus_ARTICLE_STATUS_DRAFT} {
		res, err = e.client.ListArticles(ctx, req(t, e, demoted, &articlev1.ListArticlesRequest{Status: status}))
		if err != nil || len(res.Msg.GetArticles()) != 0 {
			t.Fatalf("a demoted author lists %d drafts (%v), want 0", len(res.Msg.GetArticles()), err)
		}
	}
}
