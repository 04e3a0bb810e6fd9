//! Key owners on the admin API: `user_id` on issue and update must name a member of the key's
//! tenant (or the user whose personal tenant it is), `null` clears it, key views and audit
//! entries carry it.

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::*;
use crate::user::personal_tenant;

async fn issue(cp: &Cp, token: &str, tenant: Uuid, body: Value) -> (u16, Value) {
    cp.call(
        Method::POST,
        &format!("/admin/tenants/{tenant}/api-keys"),
        Some(token),
        Some(body),
    )
    .await
}

async fn patch(cp: &Cp, token: &str, tenant: Uuid, key: &Value, body: Value) -> (u16, Value) {
    let id = key["id"].as_str().unwrap();
    cp.call(
        Method::PATCH,
        &format!("/admin/tenants/{tenant}/api-keys/{id}"),
        Some(token),
        Some(body),
    )
    .await
}

fn assert_refused(status: u16, err: &Value) {
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "user_id", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a member of this tenant"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_owner_is_a_member_of_the_keys_tenant_and_null_clears_it() {
    let cp = Cp::start("").await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let org = cp.tenant("org").await;
    let member = cp.user("member@x.test", false).await;
    cp.member(&org, &member, "user").await;
    let stranger = cp.user("stranger@x.test", false).await;

    // A member owns a key; the view (and the one-time answer) shows it.
    let (status, key) = issue(&cp, &t, org.id, json!({"name": "ci", "user_id": member.id})).await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["user_id"], json!(member.id));
    assert_eq!(
        key["created_by"],
        json!(root.id),
        "the issuer stays recorded"
    );
    // Someone outside the tenant, or no one at all, cannot own one.
    for owner in [stranger.id, Uuid::now_v7()] {
        let (status, err) = issue(&cp, &t, org.id, json!({"name": "x", "user_id": owner})).await;
        assert_refused(status, &err);
    }
    let (status, err) = issue(&cp, &t, org.id, json!({"user_id": "not-a-uuid"})).await;
    assert_eq!(status, 400, "{err}");
    // A key without owner is still issued as before.
    let (status, ownerless) = issue(&cp, &t, org.id, json!({"name": "free"})).await;
    assert_eq!(
        (status, &ownerless["user_id"]),
        (201, &Value::Null),
        "{ownerless}"
    );

    // Update: the owner is checked the same way; absent leaves it, `null` clears it.
    let (status, err) = patch(&cp, &t, org.id, &ownerless, json!({"user_id": stranger.id})).await;
    assert_refused(status, &err);
    let (status, owned) = patch(&cp, &t, org.id, &ownerless, json!({"user_id": member.id})).await;
    assert_eq!(
        (status, &owned["user_id"]),
        (200, &json!(member.id)),
        "{owned}"
    );
    let (status, renamed) = patch(&cp, &t, org.id, &owned, json!({"name": "renamed"})).await;
    assert_eq!(
        (status, &renamed["user_id"]),
        (200, &json!(member.id)),
        "{renamed}"
    );
    let (status, cleared) = patch(&cp, &t, org.id, &key, json!({"user_id": null})).await;
    assert_eq!(
        (status, &cleared["user_id"]),
        (200, &Value::Null),
        "{cleared}"
    );
    let id = key["id"].as_str().unwrap();
    let (_, read) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{}/api-keys/{id}", org.id),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(read["user_id"], Value::Null, "{read}");

    // The audit entries carry the owner before and after.
    let (_, audit) = cp
        .call(
            Method::GET,
            &format!("/admin/audit?tenant_id={}&limit=200", org.id),
            Some(&t),
            None,
        )
        .await;
    let entries = audit["data"].as_array().unwrap();
    let of_key = |action: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["target_id"] == id)
            .collect()
    };
    let issued = of_key("api_key.issue");
    assert_eq!(issued.len(), 1, "{audit}");
    assert_eq!(issued[0]["after"]["user_id"], json!(member.id));
    let updates = of_key("api_key.update");
    assert_eq!(updates.len(), 1, "{audit}");
    assert_eq!(updates[0]["before"]["user_id"], json!(member.id));
    assert_eq!(updates[0]["after"]["user_id"], Value::Null);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_of_a_personal_tenant_may_own_its_keys_and_no_one_else() {
    let cp = Cp::start("").await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let mut owner = cp.user("owner@x.test", false).await;
    let personal = personal_tenant(&cp, &mut owner).await;
    let other = cp.user("other@x.test", false).await;
    let (status, key) = issue(&cp, &t, personal.id, json!({"user_id": owner.id})).await;
    assert_eq!((status, &key["user_id"]), (201, &json!(owner.id)), "{key}");
    let (status, err) = issue(&cp, &t, personal.id, json!({"user_id": other.id})).await;
    assert_refused(status, &err);
    // The personal-tenant link alone does not make an organization's key theirs.
    let org = cp.tenant("org").await;
    let (status, err) = issue(&cp, &t, org.id, json!({"user_id": owner.id})).await;
    assert_refused(status, &err);
    cp.stop().await;
}
