//! The served OpenAPI document covers every route of the route table, and every schema
//! reference in it resolves.

use omg_controlplane::api::routes;

use crate::harness::*;

fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(r) = v.as_str() {
                        out.push(r.to_owned());
                    }
                }
                refs(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_covers_every_route() {
    let cp = Cp::start("").await;
    let doc: serde_json::Value = cp
        .http
        .get(cp.url("/admin/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut missing = Vec::new();
    for spec in routes() {
        let op = &doc["paths"][spec.path][spec.method.as_str().to_lowercase()];
        if op.is_null() {
            missing.push(format!("{} {}", spec.method, spec.path));
            continue;
        }
        assert!(
            op["responses"][spec.ok.to_string()].is_object(),
            "{} {}: no {} answer",
            spec.method,
            spec.path,
            spec.ok
        );
        assert_eq!(
            op["requestBody"].is_object(),
            spec.request.is_some(),
            "{} {}",
            spec.method,
            spec.path
        );
        for segment in spec.path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            let params = op["parameters"].as_array().unwrap();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path"),
                "{}: path parameter {name}",
                spec.path
            );
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling reference {r}"
        );
    }
    cp.stop().await;
}
