-- A person's consent preferences and their history (profile.Consent), as
-- JSON, beside the rest of the metadata: category names, statuses, times,
-- message ids and sources, in clear as the recipients are, and gone with the
-- profile's row. NULL: never collected.
ALTER TABLE {p}profiles ADD COLUMN consent text;
