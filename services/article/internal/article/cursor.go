package article

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"pressroom.dev/kit/ids"
)

// cursor is the position after the last row of a page (keyset paging, so
// pages stay stable while articles are added).
type cursor struct {
	SortAt time.Time `json:"t"`
	ID     string    `json:"i"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errBadCursor = errors.New("page_token is not valid: pass the next_page_token of a previous response unchanged")

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	// The id goes to SQL as a uuid: anything else would fail there.
	if err != nil || json.Unmarshal(b, &c) != nil || !ids.IsUUID(c.ID) || c.SortAt.IsZero() {
		return cursor{}, errBadCursor
	}
	return c, nil
}
