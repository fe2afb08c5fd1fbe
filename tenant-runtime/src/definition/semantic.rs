//! Rules that span several values and so cannot be schema keywords: step
//! names unique across an integration's whole tree of steps, one name per
//! resource kind in a file, a back-off that does not shrink,
//! connections of the right kind, and (through [`super::expressions`])
//! jq expressions and templates that compile.
//!
//! Connections are checked when the one referred to is defined in the same
//! file or, when the caller knows them (the server, applying into a tenant),
//! among the connections already stored; then a name found in neither is an
//! error too.

use std::collections::{HashMap, hash_map::Entry};

use super::{
    Action, Backoff, ConnectionKind, Duration, IntegrationSpec, Name, Resource, ResourceKind, Step, StoredConnections, Trigger,
    WebhookAuth, WebhookTrigger,
    error::{Issue, Path},
    expressions,
};

const MAX_WEBHOOK_WAIT: (std::time::Duration, &str) = (WebhookTrigger::MAX_WAIT, "5m");
/// A signature older than a day protects against no replay worth the name.
const MAX_SIGNATURE_TOLERANCE: (std::time::Duration, &str) = (std::time::Duration::from_secs(86_400), "1day");

/// Issues found across `resources`, each with the index of its resource.
/// With `stored`, every connection referred to must be in the file or there.
pub(crate) fn check(resources: &[Resource], stored: Option<&StoredConnections>) -> Vec<(usize, Issue)> {
    let mut issues = duplicate_names(resources);
    issues.extend(credential_hosts(resources));
    // The file's connections replace stored ones of the same name.
    let mut connections: HashMap<&Name, ConnectionKind> =
        stored.into_iter().flatten().map(|(name, kind)| (name, *kind)).collect();
    connections.extend(resources.iter().filter_map(|resource| match resource {
        Resource::Connection(connection) => Some((&connection.metadata.name, connection.spec.kind())),
        Resource::Integration(_) | Resource::Api(_) => None,
    }));
    let complete = stored.is_some();
    for (index, resource) in resources.iter().enumerate() {
        if let Resource::Integration(integration) = resource {
            let found = IntegrationChecker::run(&integration.spec, &connections, complete);
            issues.extend(found.into_iter().map(|issue| (index, issue)));
        }
        if let Resource::Api(api) = resource {
            issues.extend(api_routes(&api.spec).into_iter().map(|issue| (index, issue)));
        }
    }
    issues
}

/// An API's routes: no two with the same method and path, each with an
/// integration or a backend, request schemas that are JSON Schemas, and jq
/// that compiles; `jwt` exactly with `auth: jwt`; CORS that browsers accept.
fn api_routes(spec: &super::ApiSpec) -> Vec<Issue> {
    let mut issues = api_access(spec);
    let mut seen = HashMap::new();
    for (i, route) in spec.routes.iter().enumerate() {
        let at = Path::root().key("spec").key("routes").index(i);
        if route.method == super::HttpMethod::Get && route.path == "/openapi.json" {
            issues.push(Issue::at(at.key("path"), "GET /openapi.json answers with the API's OpenAPI document; choose another path"));
        }
        match (&route.integration, &route.forward) {
            (Some(_), Some(_)) => issues.push(Issue::at(at.key("forward"), "a route runs an integration or forwards to a backend, not both")),
            (None, None) => issues.push(Issue::at(at.clone(), "a route needs `integration` or `forward`")),
            (None, Some(forward)) => {
                issues.extend(web_url(&forward.url, at.key("forward").key("url")));
                if forward.timeout.is_some_and(|t| t.get() > super::ApiForward::MAX_TIMEOUT) {
                    issues.push(Issue::at(at.key("forward").key("timeout"), "at most 5m"));
                }
            }
            (Some(_), None) => {}
        }
        let shape: Vec<&str> = route.path.split('/').map(|s| if s.starts_with('{') { "{}" } else { s }).collect();
        if let Some(first) = seen.insert((route.method, shape.join("/")), i) {
            issues.push(Issue::at(at.key("path"), format!("routes[{first}] has the same method and path")));
        }
        if let Some(schema) = &route.request_schema {
            if let Err(e) = jsonschema::validator_for(schema) {
                issues.push(Issue::at(at.key("requestSchema"), format!("not a valid JSON Schema: {e}")));
            }
        }
        issues.extend(super::expressions::check_route(route, &at));
    }
    issues
}

fn api_access(spec: &super::ApiSpec) -> Vec<Issue> {
    let spec_at = Path::root().key("spec");
    let mut issues = Vec::new();
    match (spec.auth, &spec.jwt) {
        (super::ApiAuth::Jwt, None) => issues.push(Issue::at(spec_at.key("jwt"), "`auth: jwt` needs the identity provider in `jwt`")),
        (super::ApiAuth::Jwt, Some(jwt)) => issues.extend(web_url(&jwt.jwks_url, spec_at.key("jwt").key("jwksUrl"))),
        (_, Some(_)) => issues.push(Issue::at(spec_at.key("jwt"), "`jwt` is only read with `auth: jwt`")),
        (_, None) => {}
    }
    if let Some(cors) = &spec.cors {
        if cors.allow_credentials && cors.allow_origins.iter().any(|o| o == "*") {
            let message = "browsers refuse credentialed calls to an API open to every origin (`*`): name the origins";
            issues.push(Issue::at(spec_at.key("cors").key("allowOrigins"), message));
        }
    }
    issues
}

/// An `http` or `https` URL with a host: what the egress gate can check.
fn web_url(text: &str, at: Path) -> Option<Issue> {
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => None,
        Ok(_) => Some(Issue::at(at, "an http or https URL with a host")),
        Err(e) => Some(Issue::at(at, format!("not a URL: {e}"))),
    }
}

/// Every `hosts` pattern of a connection parses as an egress rule does.
fn credential_hosts(resources: &[Resource]) -> Vec<(usize, Issue)> {
    let mut issues = Vec::new();
    for (index, resource) in resources.iter().enumerate() {
        let Resource::Connection(connection) = resource else { continue };
        for (i, host) in connection.spec.credential_hosts().iter().enumerate() {
            if let Err(e) = host.parse::<crate::egress::Rule>() {
                let path = Path::root().key("spec").key(connection.spec.kind().as_str()).key("hosts").index(i);
                issues.push((index, Issue::at(path, e.to_string())));
            }
        }
    }
    issues
}

fn duplicate_names(resources: &[Resource]) -> Vec<(usize, Issue)> {
    let mut first_seen: HashMap<(ResourceKind, &Name), usize> = HashMap::new();
    let mut issues = Vec::new();
    for (index, resource) in resources.iter().enumerate() {
        let (kind, name) = (resource.kind(), resource.name());
        match first_seen.entry((kind, name)) {
            Entry::Occupied(first) => {
                let message = format!("{kind} `{name}` is already defined in document {}", first.get() + 1);
                issues.push((index, Issue::at(Path::root().key("metadata").key("name"), message)));
            }
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
        }
    }
    issues
}

struct IntegrationChecker<'a> {
    connections: &'a HashMap<&'a Name, ConnectionKind>,
    /// `connections` holds every connection there is: a name outside it is an error.
    complete: bool,
    /// Where each step name was first used.
    step_names: HashMap<&'a str, Path>,
    issues: Vec<Issue>,
}

impl<'a> IntegrationChecker<'a> {
    fn run(spec: &'a IntegrationSpec, connections: &'a HashMap<&'a Name, ConnectionKind>, complete: bool) -> Vec<Issue> {
        let mut checker = Self { connections, complete, step_names: HashMap::new(), issues: Vec::new() };
        let spec_path = Path::root().key("spec");
        for (i, trigger) in spec.triggers.iter().enumerate() {
            checker.trigger(trigger, &spec_path.key("triggers").index(i));
        }
        checker.steps(&spec.steps, &spec_path.key("steps"));
        checker.steps(&spec.on_error, &spec_path.key("on_error"));
        checker.issues
    }

    fn trigger(&mut self, trigger: &Trigger, path: &Path) {
        match trigger {
            Trigger::Queue(queue) => {
                self.short_string(&queue.queue, &path.key("queue").key("queue"));
                let kinds = [ConnectionKind::Amqp];
                self.connection(&queue.connection, &kinds, "a queue trigger", &path.key("queue").key("connection"));
            }
            Trigger::Webhook(webhook) => {
                let path = path.key("webhook");
                self.at_most(webhook.timeout, MAX_WEBHOOK_WAIT, &path.key("timeout"));
                if let WebhookAuth::Hmac(hmac) = &webhook.auth {
                    let path = path.key("auth").key("hmac");
                    self.at_most(hmac.tolerance, MAX_SIGNATURE_TOLERANCE, &path.key("tolerance"));
                    let kinds = [ConnectionKind::ApiKey, ConnectionKind::Bearer];
                    let path = path.key("secret_from_connection");
                    self.connection(&hmac.secret_from_connection, &kinds, "an hmac secret", &path);
                }
            }
            Trigger::Manual(_) | Trigger::Schedule(_) => {}
        }
    }

    /// Check `steps` and everything nested in them, depth first in the
    /// order they are written, so a duplicate is reported at its second
    /// appearance.
    fn steps(&mut self, steps: &'a [Step], path: &Path) {
        for (i, step) in steps.iter().enumerate() {
            let here = path.index(i);
            self.step(step, &here);
            for (suffix, nested) in step.action.nested_steps() {
                self.steps(nested, &here.join(&suffix));
            }
            self.steps(&step.on_error, &here.key("on_error"));
        }
    }

    fn step(&mut self, step: &'a Step, path: &Path) {
        let name_path = path.key("name");
        if let Some(first) = self.step_names.get(step.name.as_str()) {
            let message = format!("step name `{}` is already used at {first}", step.name);
            self.issues.push(Issue::at(name_path, message));
        } else {
            self.step_names.insert(step.name.as_str(), name_path);
        }
        if let Some(retry) = &step.retry {
            self.backoff(&retry.backoff, &path.key("retry").key("backoff"));
        }
        self.action(&step.action, &path.key(step.action.key()));
        self.issues.extend(expressions::check(&step.action, &path.key(step.action.key())));
    }

    fn action(&mut self, action: &Action, path: &Path) {
        match action {
            Action::Http(http) => {
                if let Some(connection) = &http.connection {
                    self.connection(connection, ConnectionKind::HTTP, "an http step", &path.key("connection"));
                }
            }
            Action::Sql(sql) => {
                self.connection(&sql.connection, &[ConnectionKind::Postgres], "an sql step", &path.key("connection"));
            }
            Action::Publish(publish) => {
                self.short_string(&publish.exchange, &path.key("exchange"));
                let kinds = [ConnectionKind::Amqp];
                self.connection(&publish.connection, &kinds, "a publish step", &path.key("connection"));
            }
            Action::Parallel(parallel) => {
                let mut first_seen = HashMap::new();
                for (i, branch) in parallel.branches.iter().enumerate() {
                    if let Entry::Occupied(first) = first_seen.entry(branch.name.as_str()) {
                        let message =
                            format!("branch name `{}` is already used by branch {}", branch.name, first.get());
                        self.issues.push(Issue::at(path.key("branches").index(i).key("name"), message));
                    } else {
                        first_seen.insert(branch.name.as_str(), i);
                    }
                }
            }
            _ => {}
        }
    }

    /// Fields with a lower maximum than every duration's ([`Duration::MAX`]).
    fn at_most(&mut self, duration: Option<Duration>, (max, text): (std::time::Duration, &str), path: &Path) {
        if let Some(Err(message)) = duration.map(|d| d.at_most(max, text)) {
            self.issues.push(Issue::at(path.clone(), message));
        }
    }

    /// AMQP names are short strings, their length one byte; the schema's
    /// `maxLength` counts characters, so bytes are checked here.
    fn short_string(&mut self, text: &str, path: &Path) {
        if text.len() > 255 {
            let message = format!("is {} bytes long; AMQP names take at most 255", text.len());
            self.issues.push(Issue::at(path.clone(), message));
        }
    }

    fn backoff(&mut self, backoff: &Backoff, path: &Path) {
        if backoff.initial > backoff.max {
            let message = format!("`initial` ({}) is longer than `max` ({})", backoff.initial, backoff.max);
            self.issues.push(Issue::at(path.key("initial"), message));
        }
    }

    /// A connection known here must be of one of `kinds`; when every
    /// connection is known, it must exist.
    fn connection(&mut self, name: &Name, kinds: &[ConnectionKind], user: &str, path: &Path) {
        let Some(kind) = self.connections.get(name) else {
            if self.complete {
                let message = format!("connection `{name}` does not exist: define it in this file or apply it first");
                self.issues.push(Issue::at(path.clone(), message));
            }
            return;
        };
        if !kinds.contains(kind) {
            let expected: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            let message = format!("connection `{name}` is of kind {kind}, but {user} needs {}", expected.join(" or "));
            self.issues.push(Issue::at(path.clone(), message));
        }
    }
}
