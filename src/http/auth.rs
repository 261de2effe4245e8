//! Authentication of a request's credentials and the actions each endpoint needs: one place
//! where both APIs meet the rule set of `crate::auth::policy`.

use base64::Engine;
use http::{header, HeaderMap, StatusCode};

use super::apis::path::ApiEndpoint;
use super::apis::resource::Resource;
use super::apis::status::StatusError;
use super::endpoint::Endpoint;
use super::error::{ApiError, Code};
use super::response::{self as resp, Response};
use crate::auth::jwt::Access;
use crate::auth::{allowed, Action, Auth, Identity};
use crate::registry::{Reference, RepositoryName};

/// How the server authenticates, from its configuration.
pub struct AuthSettings {
    pub auth: Auth,
    /// Off: the zero-config default (loopback only), where every client may do anything.
    pub enabled: bool,
    /// Namespaces anyone may pull from without credentials.
    pub anonymous_pull: Vec<String>,
    /// The `service` (token audience) this registry answers for.
    pub service: String,
    /// Lifetime of registry tokens, in seconds.
    pub token_ttl: u64,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Authentication is off.
    Open,
    Anonymous,
    User(Identity),
}

/// A repository action in the terms of a registry token's scope.
fn scope_action(action: &Action) -> &'static str {
    match action {
        Action::View(_) => "pull",
        Action::DeleteTag(_) | Action::DeleteManifest(_) => "delete",
        _ => "push",
    }
}

impl Caller {
    /// Whether the caller may do `action` (on `repo`, for scope-limited registry tokens).
    pub fn may(&self, settings: &AuthSettings, action: &Action, repo: Option<&str>) -> bool {
        match self {
            Caller::Open => true,
            Caller::Anonymous => {
                matches!(action, Action::View(ns) if settings.anonymous_pull.contains(ns))
            }
            Caller::User(id) => allowed(id, action) && within_scope(id, action, repo),
        }
    }

    /// [`Caller::may`] with the caller's full rights, not limited by a token's scope (for
    /// filtering listings the token was granted as a whole).
    pub fn may_ignoring_scope(&self, settings: &AuthSettings, action: &Action) -> bool {
        unscoped(self).may(settings, action, None)
    }

    pub fn user(&self) -> &str {
        match self {
            Caller::Open => "system:anonymous-admin",
            Caller::Anonymous => "system:anonymous",
            Caller::User(id) => &id.user,
        }
    }
}

/// A registry token only grants what its `access` names.
fn within_scope(id: &Identity, action: &Action, repo: Option<&str>) -> bool {
    let Some(scope) = &id.scope else {
        return true;
    };
    let (kind, name, wanted) = match (action, repo) {
        (Action::ReadAll, _) => ("registry", "catalog", "*"),
        (_, Some(repo)) => ("repository", repo, scope_action(action)),
        _ => return false,
    };
    scope.iter().any(|a| {
        a.kind == kind && a.name == name && a.actions.iter().any(|x| x == wanted || x == "*")
    })
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Credentials were sent but are not valid.
    Invalid(&'static str),
    /// Too many failed logins for the name or from the source: retry after this many seconds.
    Throttled(u64),
}

impl From<&'static str> for Refused {
    fn from(why: &'static str) -> Self {
        Refused::Invalid(why)
    }
}

impl Refused {
    /// The refusal as a Kubernetes Status (for /apis and /auth).
    pub fn status(self) -> StatusError {
        match self {
            Refused::Invalid(why) => StatusError::unauthorized(Some(why)),
            Refused::Throttled(secs) => throttled_status(secs),
        }
    }
}

const THROTTLED: &str = "too many failed login attempts; try again later";

pub fn throttled_status(retry_after_secs: u64) -> StatusError {
    StatusError::too_many_requests(THROTTLED, retry_after_secs)
}

/// 429 TOOMANYREQUESTS with `Retry-After`, for /v2.
pub fn v2_throttled(retry_after_secs: u64) -> Response {
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        Code::TooManyRequests,
        THROTTLED,
    )
    .into_response();
    resp::set(&mut r, header::RETRY_AFTER, &retry_after_secs.to_string());
    r
}

fn password_refused(e: crate::auth::AuthError) -> Refused {
    match e {
        crate::auth::AuthError::Throttled(t) => Refused::Throttled(t.retry_after_secs()),
        _ => Refused::Invalid("authentication failed"),
    }
}

/// Reads the request's credentials. `Err` means credentials were sent but are not valid (or
/// may not be tried now). `source` is the peer address, for the failed-login budgets.
/// What an `Authorization` header value says, before anything is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization<'a> {
    Basic {
        name: String,
        password: String,
    },
    Bearer(&'a str),
    /// Refused as sent (the reason is safe to show the client).
    Invalid(&'static str),
}

/// Parses an `Authorization` header value: the scheme case-insensitively, Basic credentials
/// as base64 of UTF-8 `name:password` (the password may hold colons), a bearer token trimmed.
pub fn parse_authorization(value: &str) -> Authorization<'_> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((name, password)) => Authorization::Basic {
                name: name.to_string(),
                password: password.to_string(),
            },
            None => Authorization::Invalid("malformed Basic credentials"),
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Authorization::Bearer(rest.trim())
    } else {
        Authorization::Invalid("unsupported authorization scheme")
    }
}

pub async fn authenticate(
    settings: &AuthSettings,
    headers: &HeaderMap,
    client_cert: Option<&str>,
    source: Option<std::net::IpAddr>,
) -> Result<Caller, Refused> {
    if !settings.enabled {
        return Ok(Caller::Open);
    }
    let auth = &settings.auth;
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match value.map(parse_authorization) {
        None => match client_cert {
            Some(cn) => auth.get_user(cn).ok(),
            None => return Ok(Caller::Anonymous),
        },
        Some(Authorization::Basic { name, password }) => auth
            .check_password(&name, &password, source)
            .await
            .map_err(password_refused)?,
        Some(Authorization::Bearer(token)) => {
            if let Some(u) = auth
                .check_token(token)
                .map_err(|_| "authentication failed")?
            {
                Some(u)
            } else {
                let claims = auth
                    .keys()
                    .verify(token, &settings.service)
                    .ok_or("invalid or expired token")?;
                if claims.sub.is_empty() {
                    // An anonymous token grants nothing beyond anonymous access.
                    return Ok(Caller::Anonymous);
                }
                let user = auth.get_user(&claims.sub).map_err(|_| "unknown user")?;
                let mut id = auth.identity(&user).map_err(|_| "authentication failed")?;
                id.scope = Some(claims.access);
                return Ok(Caller::User(id));
            }
        }
        Some(Authorization::Invalid(why)) => return Err(Refused::Invalid(why)),
    };
    let user = user.ok_or("invalid credentials")?;
    Ok(Caller::User(
        auth.identity(&user).map_err(|_| "authentication failed")?,
    ))
}

// ---- /v2

/// The actions a registry request needs; `None` for endpoints anyone authenticated may use.
pub fn v2_actions(
    endpoint: &Endpoint,
    stream_exists: impl Fn(&RepositoryName) -> bool,
) -> Vec<Action> {
    let ns = |repo: &RepositoryName| repo.namespace().as_str().to_string();
    match endpoint {
        Endpoint::Healthz
        | Endpoint::Readyz
        | Endpoint::Console { .. }
        | Endpoint::ApiVersion
        | Endpoint::Catalog { .. } => Vec::new(),
        Endpoint::GetBlob { repo, .. }
        | Endpoint::GetManifest { repo, .. }
        | Endpoint::ListTags { repo, .. }
        | Endpoint::Referrers { repo, .. } => vec![Action::View(ns(repo))],
        Endpoint::DeleteBlob { repo, .. } => vec![Action::DeleteTag(ns(repo))],
        Endpoint::StartUpload { repo, .. }
        | Endpoint::UploadStatus { repo, .. }
        | Endpoint::PatchUpload { repo, .. }
        | Endpoint::FinishUpload { repo, .. }
        | Endpoint::CancelUpload { repo, .. } => vec![Action::Push(ns(repo))],
        Endpoint::PutManifest { repo, .. } => {
            let mut v = vec![Action::Push(ns(repo))];
            if !stream_exists(repo) {
                v.push(Action::CreateStream(ns(repo)));
            }
            v
        }
        Endpoint::DeleteManifest { repo, reference } => match reference {
            Reference::Tag(_) => vec![Action::DeleteTag(ns(repo))],
            Reference::Digest(_) => vec![Action::DeleteManifest(ns(repo))],
        },
    }
}

/// The repository a registry request addresses.
pub fn v2_repository(endpoint: &Endpoint) -> Option<&RepositoryName> {
    match endpoint {
        Endpoint::GetBlob { repo, .. }
        | Endpoint::DeleteBlob { repo, .. }
        | Endpoint::StartUpload { repo, .. }
        | Endpoint::UploadStatus { repo, .. }
        | Endpoint::PatchUpload { repo, .. }
        | Endpoint::FinishUpload { repo, .. }
        | Endpoint::CancelUpload { repo, .. }
        | Endpoint::GetManifest { repo, .. }
        | Endpoint::PutManifest { repo, .. }
        | Endpoint::DeleteManifest { repo, .. }
        | Endpoint::ListTags { repo, .. }
        | Endpoint::Referrers { repo, .. } => Some(repo),
        _ => None,
    }
}

/// The access a refusal concerns, as distribution spells it in an error's `detail` (docker
/// retries errors whose detail is empty, for up to a minute).
fn access_detail(scope: Option<&str>) -> serde_json::Value {
    let detail: Vec<serde_json::Value> = scope
        .map(Access::parse_scopes)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|a| {
            a.actions.into_iter().map(
                move |action| serde_json::json!({"Type": a.kind, "Name": a.name, "Action": action}),
            )
        })
        .collect();
    serde_json::Value::Array(detail)
}

/// 401 with the challenge that starts the Docker token flow for `scope`. `insufficient`: the
/// request carried credentials that do not cover the scope (RFC 6750's `insufficient_scope`).
pub fn v2_challenge(
    settings: &AuthSettings,
    realm_base: &str,
    scope: Option<String>,
    why: &str,
    insufficient: bool,
) -> Response {
    let mut value = format!(
        "Bearer realm=\"{realm_base}/auth/token\",service=\"{}\"",
        settings.service
    );
    if let Some(scope) = &scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if insufficient {
        value.push_str(",error=\"insufficient_scope\"");
    }
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, Code::Unauthorized, why)
        .with_detail(access_detail(scope.as_deref()))
        .into_response();
    resp::set(&mut r, header::WWW_AUTHENTICATE, &value);
    r
}

/// 403 DENIED for `scope` (the caller is known and lacks the role).
pub fn v2_denied(scope: Option<String>) -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        Code::Denied,
        "requested access to the resource is denied",
    )
    .with_detail(access_detail(scope.as_deref()))
    .into_response()
}

/// The scope string a challenge for `actions` on `repo` asks for.
pub fn v2_scope(repo: &RepositoryName, actions: &[Action]) -> String {
    let mut names: Vec<&str> = actions.iter().map(scope_action).collect();
    if names.contains(&"push") && !names.contains(&"pull") {
        names.insert(0, "pull");
    }
    names.dedup();
    format!("repository:{repo}:{}", names.join(","))
}

// ---- /apis

/// The actions an API request needs. Lists across namespaces need nothing here: they are
/// filtered to what the caller may view.
pub fn api_actions(endpoint: &ApiEndpoint) -> Vec<Action> {
    use ApiEndpoint as E;
    let ns = |n: &crate::registry::Namespace| n.as_str().to_string();
    match endpoint {
        E::Version
        | E::CoreVersions
        | E::CoreResources
        | E::Groups
        | E::Group
        | E::GroupResources
        | E::OpenApiV2
        | E::OpenApiV3Index
        | E::OpenApiV3(_)
        | E::BerthGroup
        | E::BerthGroupResources => Vec::new(),
        E::ListImageStreams {
            namespace: None, ..
        }
        | E::ListImageStreamTags {
            namespace: None, ..
        }
        | E::ListNamespaces => Vec::new(),
        E::GetNamespace { namespace } => vec![Action::View(ns(namespace))],
        E::WatchImageStreams {
            namespace: None, ..
        } => vec![Action::ReadAll],
        E::ListImageStreams {
            namespace: Some(n), ..
        }
        | E::WatchImageStreams {
            namespace: Some(n), ..
        }
        | E::ListImageStreamTags {
            namespace: Some(n), ..
        }
        | E::GetImageStream { namespace: n, .. }
        | E::GetImageStreamStatus { namespace: n, .. }
        | E::GetImageStreamTag { namespace: n, .. }
        | E::GetImageStreamImage { namespace: n, .. } => vec![Action::View(ns(n))],
        E::CreateImageStream { namespace } => vec![Action::CreateStream(ns(namespace))],
        E::ReplaceImageStream { namespace, .. }
        | E::PatchImageStream { namespace, .. }
        | E::ReplaceImageStreamStatus { namespace, .. }
        | E::CreateImageStreamMapping { namespace } => vec![Action::Push(ns(namespace))],
        E::CreateImageStreamTag { namespace, .. } | E::ReplaceImageStreamTag { namespace, .. } => {
            vec![
                Action::Push(ns(namespace)),
                Action::CreateStream(ns(namespace)),
            ]
        }
        E::DeleteImageStream { namespace, .. } | E::DeleteImageStreamTag { namespace, .. } => {
            vec![Action::DeleteTag(ns(namespace))]
        }
        E::CreateImageStreamImport { namespace } => {
            vec![
                Action::Import(ns(namespace)),
                Action::CreateStream(ns(namespace)),
            ]
        }
        E::ListImages { .. } | E::WatchImages { .. } | E::GetImage { .. } => {
            vec![Action::ReadImages]
        }
        E::DeleteImage { .. } => vec![Action::DeleteImages],
        E::ListSecrets { namespace }
        | E::CreateSecret { namespace }
        | E::GetSecret { namespace, .. }
        | E::DeleteSecret { namespace, .. } => vec![Action::Secrets(ns(namespace))],
        // A subscription receives whatever happens in its namespace: admins only.
        E::ListWebhooks { namespace }
        | E::WatchWebhooks { namespace, .. }
        | E::CreateWebhook { namespace }
        | E::GetWebhook { namespace, .. }
        | E::ReplaceWebhook { namespace, .. }
        | E::DeleteWebhook { namespace, .. } => vec![Action::Webhooks(ns(namespace))],
    }
}

/// Requests that need an authenticated caller although they need no role: lists across
/// namespaces (filtered to what the caller may view) would otherwise answer anonymous callers
/// with an empty list instead of the 401 every other resource gives them.
pub fn api_needs_identity(endpoint: &ApiEndpoint) -> bool {
    matches!(
        endpoint,
        ApiEndpoint::ListImageStreams {
            namespace: None,
            ..
        } | ApiEndpoint::ListImageStreamTags {
            namespace: None,
            ..
        } | ApiEndpoint::ListNamespaces
    )
}

/// Kubernetes' 403 for a refused API request.
pub fn api_forbidden(caller: &Caller, endpoint: &ApiEndpoint, action: &Action) -> StatusError {
    let resource = endpoint.resource().unwrap_or(Resource::ImageStreams);
    let group = resource.group();
    let mut msg = format!(
        "User {:?} cannot {} resource {:?} in API group {:?}",
        caller.user(),
        action.verb(),
        resource.plural(),
        group
    );
    match action.namespace() {
        Some(ns) => msg.push_str(&format!(" in the namespace {ns:?}")),
        None => msg.push_str(" at the cluster scope"),
    }
    if action
        .namespace()
        .is_some_and(|ns| crate::auth::policy::RESERVED_NAMESPACES.contains(&ns))
    {
        msg.push_str(" (a reserved namespace: only cluster-admins write there)");
    }
    StatusError::forbidden(resource, "", msg)
}

/// The scheme and host clients reach this server by (for the token realm). Never taken from
/// the request: a client-chosen `Host` would send other clients' passwords wherever it names.
pub fn realm_base(public_host: &str, tls: bool) -> String {
    format!("{}://{public_host}", if tls { "https" } else { "http" })
}

/// Scopes of a token request, restricted to what `caller` may do (never widened).
pub fn grant(settings: &AuthSettings, caller: &Caller, requested: &[Access]) -> Vec<Access> {
    requested
        .iter()
        .filter_map(|a| {
            let actions: Vec<String> = match a.kind.as_str() {
                "repository" => {
                    let repo = RepositoryName::parse(&a.name).ok()?;
                    let ns = repo.namespace().as_str().to_string();
                    let wanted: Vec<&str> = if a.actions.iter().any(|x| x == "*") {
                        vec!["pull", "push", "delete"]
                    } else {
                        a.actions.iter().map(String::as_str).collect()
                    };
                    wanted
                        .into_iter()
                        .filter(|w| {
                            let needs: &[Action] = match *w {
                                "pull" => &[Action::View(ns.clone())],
                                "push" => &[Action::Push(ns.clone())],
                                "delete" => &[Action::DeleteTag(ns.clone())],
                                _ => &[],
                            };
                            !needs.is_empty()
                                && needs
                                    .iter()
                                    .all(|n| unscoped(caller).may(settings, n, None))
                        })
                        .map(str::to_string)
                        .collect()
                }
                "registry" if a.name == "catalog" && !matches!(caller, Caller::Anonymous) => {
                    vec!["*".to_string()]
                }
                _ => Vec::new(),
            };
            (!actions.is_empty()).then(|| Access {
                kind: a.kind.clone(),
                name: a.name.clone(),
                actions,
            })
        })
        .collect()
}

/// The caller's own rights, without the limits of the token it came with.
fn unscoped(caller: &Caller) -> Caller {
    match caller {
        Caller::User(id) => Caller::User(Identity {
            scope: None,
            ..id.clone()
        }),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_realm_follows_the_configured_host_and_scheme() {
        assert_eq!(
            realm_base("registry.example.com:5000", false),
            "http://registry.example.com:5000"
        );
        assert_eq!(
            realm_base("registry.example.com", true),
            "https://registry.example.com"
        );
    }
}
