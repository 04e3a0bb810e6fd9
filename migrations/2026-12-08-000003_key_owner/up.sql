-- Key owner (issue 22): the user an API key acts for. The data plane stamps it on every
-- usage event of the key (`requests.user_id`), so usage can be grouped by user. A key issued
-- through /user is owned by its issuer; an admin may name any member of the key's tenant (or
-- the owner of that personal tenant). Keys issued before this migration have no owner.
-- `created_by` stays the issuer record.
ALTER TABLE api_keys ADD COLUMN user_id UUID REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id) WHERE user_id IS NOT NULL;
