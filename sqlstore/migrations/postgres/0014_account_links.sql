-- The accounts (Segment's groups) a person is linked to (profile.Metadata's
-- Accounts), as JSON: group ids and times, in clear as the recipients are,
-- gone with the profile's row. NULL: none. An account's own traits are the
-- rows of its profile (identity.AccountProfileID).
ALTER TABLE {p}profiles ADD COLUMN accounts text;
