ALTER TABLE users DROP COLUMN provisioned_by_tenant;
ALTER TABLE credentials DROP COLUMN must_change_password;
