package natskit

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The ARTICLES stream carries the article service's domain events
// (events.v1.ArticleEvent as protojson). Its producer (article's outbox
// relay) and its consumers (notification) each declare it with
// create-or-update, whoever starts first, so they share this one definition.
const (
	ArticlesStream   = "ARTICLES"
	ArticlesSubjects = "articles.>"
	// ArticlesDuplicateWindow must outlast a relay's worst retry gap so a
	// re-publish after a lost ack is dropped by JetStream.
	ArticlesDuplicateWindow = 10 * time.Minute
	ArticlesMaxAge          = 7 * 24 * time.Hour
)

// ArticlesStreamConfig is the ARTICLES stream: file storage, limits retention.
func ArticlesStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        ArticlesStream,
		Description: "article domain events (events.v1.ArticleEvent as protojson)",
		Subjects:    []string{ArticlesSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      ArticlesMaxAge,
		Duplicates:  ArticlesDuplicateWindow,
	}
}
