package article

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "pressroom.dev/proto/gen/events/v1"
)

// Event subjects on the ARTICLES stream (services/article/README.md, Event contract).
const (
	SubjectPublished   = "articles.published"
	SubjectUnpublished = "articles.unpublished"
	SubjectDeleted     = "articles.deleted"
	// SchemaVersion of events.v1.ArticleEvent payloads written by this service.
	SchemaVersion = 1
)

// ArticleURL is where the web front end serves an article.
func ArticleURL(publicURL, slug string) string {
	return strings.TrimRight(publicURL, "/") + "/articles/" + slug
}

// newEvent builds the outbox row for a change of a. The request's trace
// context is stored with it so the relay's publish and the consumer's work
// join the trace of the request that caused them.
func newEvent(ctx context.Context, subject string, a *Article, publicURL string, at time.Time) (OutboxEvent, error) {
	ev := &eventsv1.ArticleEvent{
		SchemaVersion: SchemaVersion,
		EventId:       uuid.NewString(),
		Type:          subject,
		OccurredAt:    timestamppb.New(at),
		ArticleId:     a.ID,
		Slug:          a.Slug,
		Title:         a.Title,
		AuthorId:      a.AuthorID,
		AuthorName:    a.AuthorName,
		Url:           ArticleURL(publicURL, a.Slug),
	}
	payload, err := protojson.Marshal(ev)
	if err != nil {
		return OutboxEvent{}, err
	}
	headers := map[string]string{}
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(headers))
	return OutboxEvent{EventID: ev.EventId, Subject: subject, Payload: payload, Headers: headers}, nil
}
