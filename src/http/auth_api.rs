//! `/auth/`: the Docker token endpoint (`/auth/token`) and the management API of users,
//! service accounts, access tokens, role bindings and signing keys (`/auth/v1/...`). Errors are
//! Kubernetes `Status` objects, as on `/apis`.

use std::time::Duration;

use http::{header, Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::apis::status::{Reason, StatusError};
use super::auth::{grant, Caller, Refused};
use super::query::Query;
use super::response::{self as resp, Response};
use super::{ReqBody, State};
use crate::auth::jwt::Access;
use crate::auth::service::{TokenRecord, UserRecord};
use crate::auth::{Action, AuthError, ClusterRole, Role};

const MAX_BODY: usize = 64 * 1024;

fn status(code: StatusCode, reason: Reason, message: impl Into<String>) -> StatusError {
    StatusError::new(code, reason, message)
}

impl From<AuthError> for StatusError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(m) => status(StatusCode::UNPROCESSABLE_ENTITY, Reason::Invalid, m),
            AuthError::NotFound(m) => status(
                StatusCode::NOT_FOUND,
                Reason::NotFound,
                format!("{m} not found"),
            ),
            AuthError::AlreadyExists(m) => status(
                StatusCode::CONFLICT,
                Reason::AlreadyExists,
                format!("{m} already exists"),
            ),
            AuthError::Throttled(t) => super::auth::throttled_status(t.retry_after_secs()),
            AuthError::Storage(e) => StatusError::internal(e.to_string()),
        }
    }
}

/// Registry tokens authorize /v2 only: here one could mint a permanent access token, or renew
/// itself forever.
const NO_REGISTRY_TOKENS: &str =
    "registry tokens are not accepted here: use a password or an access token";

/// Serves one `/auth/...` request. `source` is the peer address, for the failed-login budgets.
pub async fn handle(
    state: &State,
    caller: Result<Caller, Refused>,
    req: http::Request<ReqBody>,
    source: Option<std::net::IpAddr>,
) -> Response {
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    // A page's script (the console) marks its requests: a Basic challenge would make the
    // browser put up a password dialog of its own over the page's login form.
    let from_script = req.headers().contains_key("x-requested-with");
    let method = req.method().clone();
    let body = req.into_body();
    let caller = match caller {
        Ok(Caller::User(id)) if id.scope.is_some() => {
            Err(StatusError::unauthorized(Some(NO_REGISTRY_TOKENS)))
        }
        other => other.map_err(Refused::status),
    };
    let result = match (&method, path.as_str()) {
        (&Method::GET, "/auth/token") => token(state, caller, &query).await,
        (&Method::POST, "/auth/token") => match read_body(body).await {
            Ok(b) => token_form(state, &b, source).await,
            Err(e) => Err(e),
        },
        _ => match caller {
            Ok(Caller::Anonymous) => Err(StatusError::unauthorized(None)),
            Err(e) => Err(e),
            Ok(caller) => manage(state, &caller, &method, &path, body).await,
        },
    };
    result.unwrap_or_else(|e| {
        let basic = e.code == StatusCode::UNAUTHORIZED && !from_script;
        let mut r = e.into_response();
        if basic {
            resp::set(&mut r, header::WWW_AUTHENTICATE, "Basic realm=\"berth\"");
        }
        r
    })
}

pub(super) async fn read_body(body: ReqBody) -> Result<bytes::Bytes, StatusError> {
    http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| StatusError::too_large(format!("reading the request body: {e}")))
}

pub(super) fn json_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StatusError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StatusError::bad_request(format!("the request body is not valid: {e}")))
}

// ---- the Docker token flow

/// `GET /auth/token?service=&scope=...`: a registry token for the caller (Basic credentials,
/// an access token, or nobody), scoped to what it asked for and may have.
async fn token(
    state: &State,
    caller: Result<Caller, StatusError>,
    query: &Query,
) -> Result<Response, StatusError> {
    let caller = caller?;
    let scopes: Vec<Access> = query.all("scope").flat_map(Access::parse_scopes).collect();
    let service = query
        .get("service")
        .unwrap_or(&state.auth.service)
        .to_string();
    issue(state, &caller, &scopes, &service, None)
}

/// `POST /auth/token` (OAuth2 form): `grant_type=password` or `refresh_token` (an access
/// token of berth's; never a registry token, which would renew itself forever).
async fn token_form(
    state: &State,
    body: &[u8],
    source: Option<std::net::IpAddr>,
) -> Result<Response, StatusError> {
    let form = Query::parse(Some(&String::from_utf8_lossy(body)));
    let auth = &state.auth.auth;
    let user = match form.get("grant_type").unwrap_or_default() {
        "password" => {
            auth.check_password(
                form.get("username").unwrap_or_default(),
                form.get("password").unwrap_or_default(),
                source,
            )
            .await?
        }
        "refresh_token" => auth.check_token(form.get("refresh_token").unwrap_or_default())?,
        other => {
            return Err(StatusError::bad_request(format!(
                "unsupported grant_type {other:?}"
            )))
        }
    };
    let user = user.ok_or_else(|| StatusError::unauthorized(Some("invalid credentials")))?;
    let caller = Caller::User(auth.identity(&user)?);
    let scopes: Vec<Access> = form.all("scope").flat_map(Access::parse_scopes).collect();
    let service = form
        .get("service")
        .unwrap_or(&state.auth.service)
        .to_string();
    let refresh = form.get("refresh_token").map(str::to_string);
    issue(state, &caller, &scopes, &service, refresh)
}

fn issue(
    state: &State,
    caller: &Caller,
    scopes: &[Access],
    service: &str,
    refresh_token: Option<String>,
) -> Result<Response, StatusError> {
    let granted = grant(&state.auth, caller, scopes);
    let ttl = state.auth.token_ttl;
    let subject = match caller {
        Caller::User(id) => id.user.clone(),
        _ => String::new(),
    };
    let token = state
        .auth
        .auth
        .keys()
        .issue(&subject, service, granted.clone(), ttl)?;
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": crate::imagestream::types::now_rfc3339(),
        "scope": granted.iter().map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(","))).collect::<Vec<_>>().join(" "),
    });
    if let Some(r) = refresh_token {
        body["refresh_token"] = r.into();
    }
    Ok(resp::json(StatusCode::OK, &body))
}

// ---- management

fn forbidden(caller: &Caller, what: &str) -> StatusError {
    status(
        StatusCode::FORBIDDEN,
        Reason::Forbidden,
        format!("User {:?} cannot {what}", caller.user()),
    )
}

pub(super) fn require(
    state: &State,
    caller: &Caller,
    action: Action,
    what: &str,
) -> Result<(), StatusError> {
    if caller.may(&state.auth, &action, None) {
        Ok(())
    } else {
        Err(forbidden(caller, what))
    }
}

fn user_json(u: &UserRecord) -> Value {
    json!({
        "name": u.name,
        "serviceAccount": u.service_account,
        "clusterRoles": u.cluster_roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "created": u.created,
    })
}

fn token_json(t: &TokenRecord) -> Value {
    json!({
        "id": t.id,
        "user": t.user,
        "description": t.description,
        "created": t.created,
        "expires": t.expires,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewUser {
    name: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    cluster_roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewToken {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
}

#[derive(Deserialize)]
struct Binding {
    role: String,
}

fn cluster_role(s: &str) -> Result<ClusterRole, StatusError> {
    ClusterRole::parse(s).ok_or_else(|| {
        status(
            StatusCode::UNPROCESSABLE_ENTITY,
            Reason::Invalid,
            format!("unknown cluster role {s:?}: valid roles are cluster-admin, registry-viewer, image-pruner"),
        )
    })
}

async fn manage(
    state: &State,
    caller: &Caller,
    method: &Method,
    path: &str,
    body: ReqBody,
) -> Result<Response, StatusError> {
    let auth = &state.auth.auth;
    let segments: Vec<&str> = path
        .strip_prefix("/auth/v1/")
        .ok_or_else(StatusError::path_not_found)?
        .split('/')
        .collect();
    let ok = |v: Value| Ok(resp::json(StatusCode::OK, &v));
    match (method, segments.as_slice()) {
        (&Method::GET, ["whoami"]) => {
            let (roles, namespaces) = match caller {
                Caller::User(id) => (
                    id.cluster_roles
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>(),
                    id.namespace_roles
                        .iter()
                        .map(|(ns, r)| (ns.clone(), Value::String(r.to_string())))
                        .collect::<serde_json::Map<_, _>>(),
                ),
                _ => (vec!["cluster-admin".to_string()], serde_json::Map::new()),
            };
            ok(json!({"name": caller.user(), "clusterRoles": roles, "namespaces": namespaces}))
        }
        (&Method::GET, ["users"]) => {
            require(state, caller, Action::ManageUsers, "list users")?;
            ok(json!({"items": auth.list_users()?.iter().map(user_json).collect::<Vec<_>>()}))
        }
        (&Method::POST, ["users"]) => {
            require(state, caller, Action::ManageUsers, "create users")?;
            let new: NewUser = json_body(&read_body(body).await?)?;
            let roles = new
                .cluster_roles
                .iter()
                .map(|r| cluster_role(r))
                .collect::<Result<Vec<_>, _>>()?;
            let user = auth
                .create_user(&new.name, new.password.as_deref(), roles)
                .await?;
            Ok(resp::json(StatusCode::CREATED, &user_json(&user)))
        }
        (&Method::DELETE, ["users", name]) => {
            require(state, caller, Action::ManageUsers, "delete users")?;
            auth.delete_user(name).await?;
            ok(json!({"status": "Success"}))
        }
        (&Method::GET, ["tokens"]) => {
            let all = caller.may(&state.auth, &Action::ManageUsers, None);
            let tokens = auth.list_tokens((!all).then(|| caller.user()))?;
            ok(json!({"items": tokens.iter().map(token_json).collect::<Vec<_>>()}))
        }
        (&Method::POST, ["tokens"]) => {
            let new: NewToken = json_body(&read_body(body).await?)?;
            let user = new.user.unwrap_or_else(|| caller.user().to_string());
            if user != caller.user() {
                require(
                    state,
                    caller,
                    Action::ManageUsers,
                    "create tokens for other users",
                )?;
            }
            let ttl = new.expires_in_seconds.map(Duration::from_secs);
            let (record, token) = auth.create_token(&user, &new.description, ttl).await?;
            let mut v = token_json(&record);
            v["token"] = token.into();
            Ok(resp::json(StatusCode::CREATED, &v))
        }
        (&Method::DELETE, ["tokens", id]) => {
            let record = auth.get_token(id)?;
            if record.user != caller.user() {
                require(
                    state,
                    caller,
                    Action::ManageUsers,
                    "revoke other users' tokens",
                )?;
            }
            auth.revoke_token(id).await?;
            ok(json!({"status": "Success"}))
        }
        (&Method::GET, ["namespaces", ns, "rolebindings"]) => {
            require(
                state,
                caller,
                Action::Bindings(ns.to_string()),
                "list role bindings",
            )?;
            let items: Vec<Value> = auth
                .bindings(ns)?
                .into_iter()
                .map(
                    |(user, role)| json!({"user": user, "role": role.to_string(), "namespace": ns}),
                )
                .collect();
            ok(json!({"items": items}))
        }
        (&Method::PUT, ["namespaces", ns, "rolebindings", user]) => {
            require(
                state,
                caller,
                Action::Bindings(ns.to_string()),
                "bind roles",
            )?;
            let b: Binding = json_body(&read_body(body).await?)?;
            let role = Role::parse(&b.role).ok_or_else(|| {
                status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Reason::Invalid,
                    format!(
                        "unknown role {:?}: valid roles are view, edit, admin",
                        b.role
                    ),
                )
            })?;
            auth.bind(ns, user, Some(role)).await?;
            ok(json!({"user": user, "role": role.to_string(), "namespace": ns}))
        }
        (&Method::DELETE, ["namespaces", ns, "rolebindings", user]) => {
            require(
                state,
                caller,
                Action::Bindings(ns.to_string()),
                "remove role bindings",
            )?;
            auth.bind(ns, user, None).await?;
            ok(json!({"status": "Success"}))
        }
        (&Method::PUT | &Method::DELETE, ["clusterrolebindings", user, role]) => {
            require(state, caller, Action::ManageUsers, "bind cluster roles")?;
            let role = cluster_role(role)?;
            auth.set_cluster_role(user, role, method == Method::PUT)
                .await?;
            ok(
                json!({"user": user, "clusterRole": role.to_string(), "bound": method == Method::PUT}),
            )
        }
        (&Method::POST, ["signingkeys", "rotate"]) => {
            require(state, caller, Action::ManageUsers, "rotate signing keys")?;
            let kid = auth.keys().rotate().await?;
            ok(json!({"keyId": kid}))
        }
        _ => Err(StatusError::path_not_found()),
    }
}
