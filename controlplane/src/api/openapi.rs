//! The admin API's OpenAPI document, built from the route table ([`super::routes`]): every
//! route appears with its parameters, body and answer schemas (derived from the Rust types
//! with `utoipa::ToSchema`), its security and its error answers, so the document cannot drift
//! from what is served.

use utoipa::openapi::path::Operation;
use utoipa::openapi::path::{OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Components, Content, ContentBuilder, HttpMethod, InfoBuilder, KnownFormat, OpenApi,
    OpenApiBuilder, PathsBuilder, Ref, RefOr, Required, ResponseBuilder,
};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorEnvelope;
use super::{routes, Access, RouteSpec};

/// Collected component schemas.
pub type Schemas = Vec<(String, RefOr<Schema>)>;
/// Registers a type's schema (and the schemas it references) and returns a reference to it.
pub type SchemaFn = fn(&mut Schemas) -> RefOr<Schema>;
/// The query parameters of a route.
pub type ParamsFn = fn() -> Vec<Parameter>;

/// [`SchemaFn`] for a type.
pub fn schema<T: ToSchema>(acc: &mut Schemas) -> RefOr<Schema> {
    let name = T::name().into_owned();
    if !acc.iter().any(|(n, _)| *n == name) {
        acc.push((name.clone(), T::schema()));
        T::schemas(acc);
    }
    RefOr::Ref(Ref::from_schema_name(name))
}

/// [`ParamsFn`] for a query-string type.
pub fn params<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(ParameterIn::Query))
}

/// A catalog entry in the YAML schema (its Rust type lives in `shared`, which stays free of
/// documentation crates; the keys are described in docs/configuration.md).
pub struct CatalogEntryDoc;

impl utoipa::PartialSchema for CatalogEntryDoc {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let number = || ObjectBuilder::new().schema_type(Type::Number);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A `model_catalog` entry: the same keys as the YAML config (docs/configuration.md). Unknown keys are refused."))
            .property("alias", string().description(Some("Model name clients send")))
            .property("provider", string().description(Some("`openai`, `openai-compatible`, `mock`, …")))
            .property("provider_model", string())
            .property("model_type", string().description(Some("`llm` (default), `embedding`, `image`, `audio`")))
            .property("endpoint", string().description(Some("Base URL including `/v1` for OpenAI-compatible servers")))
            .property("api_key", string().description(Some("Provider credential; stored AES-256-GCM sealed, only ever shown masked")))
            .property("deployment", string())
            .property("api_version", string())
            .property("region", string())
            .property("price_input", number().description(Some("USD per 1K prompt tokens")))
            .property("price_output", number().description(Some("USD per 1K completion tokens")))
            .property("price_cache_read", number().description(Some("USD per 1K prompt tokens read from the provider's prompt cache (default: price_input)")))
            .property("price_cache_write", number().description(Some("USD per 1K prompt tokens written to the provider's prompt cache (default: price_input)")))
            .property("price_per_image", number().description(Some("USD per generated image (`model_type: image`)")))
            .property("weight", ObjectBuilder::new().schema_type(Type::Integer))
            .property("enabled", ObjectBuilder::new().schema_type(Type::Boolean))
            .property("metadata", ObjectBuilder::new().schema_type(Type::Object).additional_properties(Some(string())))
            .required("alias")
            .required("provider")
            .into()
    }
}

impl ToSchema for CatalogEntryDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("CatalogEntry")
    }
}

fn method(m: &actix_web::http::Method) -> Option<HttpMethod> {
    Some(match m.as_str() {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => return None,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No content",
        400 => "Invalid request: `error.field` names the offending field",
        401 => "Missing, invalid or expired access token",
        403 => "Needs a super admin",
        404 => "Not found, or outside the caller's tenants",
        405 => "Method not allowed",
        409 => "Conflicts with the current state",
        429 => "Too many failed logins",
        503 => "Database unavailable",
        _ => "",
    }
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut schemas: Schemas = Vec::new();
    let error = schema::<ErrorEnvelope>(&mut schemas);
    let mut paths = PathsBuilder::new();
    for spec in routes() {
        let Some(http_method) = method(&spec.method) else {
            continue;
        };
        let op = operation(&spec, &http_method, &mut schemas, &error);
        paths = paths.path(spec.path, PathItem::new(http_method, op));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Open Model Gateway admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("The control plane's admin API (`/admin`) and user API (`/user`). Access tokens come from `POST /admin/auth/login` or `POST /user/auth/login`; see docs/admin-api.md and docs/user-api.md."))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components(schemas)))
        .build()
}

fn json(schema: RefOr<Schema>) -> Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

/// One route's operation: tag, id, parameters, body, answers and security.
fn operation(
    spec: &RouteSpec,
    http_method: &HttpMethod,
    schemas: &mut Schemas,
    error: &RefOr<Schema>,
) -> Operation {
    let mut op = OperationBuilder::new()
        .summary(Some(spec.summary))
        .operation_id(Some(operation_id(spec)))
        .tag(tag_of(spec.path));
    op = path_parameters(op, spec.path);
    if let Some(query) = spec.query {
        for p in query() {
            op = op.parameter(p);
        }
    }
    if let Some(request) = spec.request {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json(request(schemas)))
                .required(Some(Required::True))
                .build(),
        ));
    }
    let mut ok = ResponseBuilder::new().description(reason(spec.ok));
    if let Some(response) = spec.response {
        ok = ok.content("application/json", json(response(schemas)));
    }
    op = op.response(spec.ok.to_string(), ok.build());
    for status in error_statuses(spec, http_method) {
        op = op.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(reason(status))
                .content("application/json", json(error.clone()))
                .build(),
        );
    }
    if spec.access != Access::Public {
        op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
    } else if spec.path.ends_with("/auth/refresh") || spec.path.ends_with("/auth/logout") {
        op = op.security(SecurityRequirement::new(
            "session_cookie",
            Vec::<String>::new(),
        ));
    }
    op.build()
}

/// The tag: the segment after `/admin` (`system` for the other routes).
fn tag_of(path: &str) -> String {
    if !path.starts_with("/admin") {
        return "system".to_owned();
    }
    let segment = path.trim_start_matches('/').split('/').nth(1);
    segment.unwrap_or("system").to_owned()
}

/// `{method}_{path}` with separators as `_` and no braces.
fn operation_id(spec: &RouteSpec) -> String {
    let path = spec.path.trim_start_matches('/');
    format!(
        "{}_{}",
        spec.method.as_str().to_lowercase(),
        path.replace(['/', '-'], "_").replace(['{', '}'], "")
    )
}

/// The `{name}` segments of `path` as required string parameters (`*_id`: UUIDs).
fn path_parameters(mut op: OperationBuilder, path: &str) -> OperationBuilder {
    for segment in path.split('/') {
        let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            continue;
        };
        let mut param_schema = ObjectBuilder::new().schema_type(Type::String);
        if name.ends_with("_id") {
            param_schema = param_schema.format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
        }
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(param_schema)),
        );
    }
    op
}

/// The error statuses a route may answer, from what it reads and the access it demands.
fn error_statuses(spec: &RouteSpec, http_method: &HttpMethod) -> Vec<u16> {
    let mut errors: Vec<u16> = vec![];
    if spec.request.is_some() || spec.query.is_some() {
        errors.push(400);
    }
    match spec.access {
        Access::Public => {}
        Access::Authenticated => errors.push(401),
        Access::SuperAdmin => errors.extend([401, 403]),
        Access::Tenant(_) | Access::Member(_) => errors.extend([401, 404]),
    }
    if spec.path.contains("_id}") && !errors.contains(&404) {
        errors.push(404);
    }
    let writes = matches!(
        http_method,
        HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch | HttpMethod::Delete
    );
    if writes && spec.access != Access::Public {
        errors.push(409);
    }
    if spec.path == "/admin/auth/login" || spec.path == "/user/auth/login" {
        errors.extend([401, 429]);
    }
    errors.push(503);
    errors
}

/// The security schemes and every schema referenced, by name.
fn components(mut schemas: Schemas) -> Components {
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        )
        .security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("og_admin_session"))),
        );
    schemas.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    components.build()
}
