-- Account safety (issue 20 §4): a password a tenant owner sets for a new account is
-- temporary (usable only to choose a new one), and the account remembers which tenant
-- provisioned it: another tenant's owner cannot adopt it, and a super admin who adds it
-- elsewhere or promotes it discards the provisioner's password.
ALTER TABLE credentials ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN provisioned_by_tenant UUID REFERENCES tenants (id) ON DELETE SET NULL;
