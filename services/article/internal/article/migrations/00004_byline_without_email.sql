-- +goose Up
-- Bylines used to fall back to the author's e-mail address when the sign-in
-- provider gave no name; an address is never published, so those go.
UPDATE articles SET author_name = '' WHERE author_name LIKE '%@%';

-- +goose Down
SELECT 1; -- the addresses are not kept anywhere to put back
