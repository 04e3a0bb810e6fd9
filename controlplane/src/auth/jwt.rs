//! Short-lived access tokens: HS256 JWTs, algorithm pinned (a token whose header names any
//! other algorithm, `none` included, is refused before its signature is looked at).

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ISSUER: &str = "omg-controlplane";

/// What an access token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Uuid,
    /// `admin` or `user` (the portal the session belongs to).
    pub realm: String,
    /// Session (refresh token family) id, so logout can be traced.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

/// Signing and verifying keys from `admin.session.jwt_secret`.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

impl JwtKeys {
    /// Keys for `secret`, tokens valid `ttl_secs`.
    pub fn new(secret: &[u8], ttl_secs: i64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
        }
    }

    /// Lifetime of new tokens in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Signs a token for `user` in `realm`.
    pub fn issue(&self, user: Uuid, realm: &str, session: Uuid) -> Result<String, String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            realm: realm.to_owned(),
            sid: session,
            iat: now,
            exp: now + self.ttl_secs,
            iss: ISSUER.to_owned(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| format!("cannot sign access token: {e}"))
    }

    /// Verifies signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn issues_and_verifies() {
        let keys = JwtKeys::new(SECRET, 900);
        let user = Uuid::now_v7();
        let token = keys.issue(user, "admin", Uuid::now_v7()).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(claims.realm, "admin");
    }

    #[test]
    fn refuses_other_secrets_algorithms_and_expired_tokens() {
        let keys = JwtKeys::new(SECRET, 900);
        let other = JwtKeys::new(b"another-secret-another-secret-xx", 900);
        let token = other
            .issue(Uuid::now_v7(), "admin", Uuid::now_v7())
            .unwrap();
        assert!(keys.verify(&token).is_err());

        // alg=none with the claims of a valid token and no signature.
        let valid = keys.issue(Uuid::now_v7(), "admin", Uuid::now_v7()).unwrap();
        let payload = valid.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(keys.verify(&format!("{none_header}.{payload}.")).is_err());
        // HS512 signed with the same secret: algorithm not allowed.
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &keys.verify(&valid).unwrap(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(keys.verify(&hs512).is_err());

        let expired = JwtKeys::new(SECRET, -60)
            .issue(Uuid::now_v7(), "admin", Uuid::now_v7())
            .unwrap();
        assert!(keys.verify(&expired).is_err());
    }
}
