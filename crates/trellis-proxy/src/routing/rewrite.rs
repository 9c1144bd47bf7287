//! What a route changes on a request or answers in its place: path and host rewrites, header
//! mutations, and the `Location` of redirects.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{
    AppendAction, HeaderMutations, PathMatch, PathRedirect, Redirect, RegexRewrite, RouteAction,
};

/// The forwarded path and query after `prefix_rewrite` / `regex_rewrite` (the query is kept).
/// `None` when the route rewrites nothing.
pub fn rewrite_path(
    action: &RouteAction,
    matched: &PathMatch,
    path_and_query: &str,
) -> Option<String> {
    let (path, query) = split_query(path_and_query);
    let new_path = if let Some(prefix) = &action.prefix_rewrite {
        replace_prefix(matched, path, prefix)
    } else if let Some(re) = &action.regex_rewrite {
        regex_substitute(re, path)
    } else {
        return None;
    };
    Some(match query {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    })
}

fn split_query(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    }
}

/// Envoy: a prefix match swaps the matched prefix, a path (or regex) match the whole path.
fn replace_prefix(matched: &PathMatch, path: &str, with: &str) -> String {
    match matched {
        PathMatch::Prefix(p) if path.len() >= p.len() && path.is_char_boundary(p.len()) => {
            format!("{with}{}", &path[p.len()..])
        }
        _ => with.to_string(),
    }
}

/// Every match of the pattern in `path` replaced; RE2's `\N` groups become the regex crate's.
pub fn regex_substitute(re: &RegexRewrite, path: &str) -> String {
    let mut repl = String::with_capacity(re.substitution.len());
    let mut chars = re.substitution.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    repl.push_str(&format!("${{{d}}}"));
                    chars.next();
                }
                Some('\\') => {
                    repl.push('\\');
                    chars.next();
                }
                _ => repl.push('\\'),
            },
            '$' => repl.push_str("$$"),
            c => repl.push(c),
        }
    }
    re.pattern.0.replace_all(path, repl.as_str()).into_owned()
}

/// Removes then adds headers, as Envoy's header parser does.
pub fn apply_header_mutations(headers: &mut HeaderMap, m: &HeaderMutations) {
    for name in &m.remove {
        headers.remove(name.as_str());
    }
    for add in &m.add {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(add.name.as_bytes()),
            HeaderValue::from_str(&add.value),
        ) else {
            continue; // validated at conversion
        };
        match add.action {
            AppendAction::AppendIfExistsOrAdd => {
                headers.append(name, value);
            }
            AppendAction::AddIfAbsent => {
                if !headers.contains_key(&name) {
                    headers.insert(name, value);
                }
            }
            AppendAction::OverwriteIfExistsOrAdd => {
                headers.insert(name, value);
            }
            AppendAction::OverwriteIfExists => {
                if headers.contains_key(&name) {
                    headers.insert(name, value);
                }
            }
        }
    }
}

/// The `Location` of a redirect, built from the request as Envoy does: the scheme, host, port and
/// path are each the redirect's when set, else the request's; the request's port is dropped when
/// it is the new scheme's default or the host or port is replaced.
pub fn redirect_location(
    r: &Redirect,
    matched: &PathMatch,
    scheme: &str,
    authority: &str,
    path_and_query: &str,
) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(scheme);
    let (req_host, req_port) = split_port(authority);
    let host = r.host.as_deref().unwrap_or(req_host);
    let port = match (r.port, r.host.is_some()) {
        (Some(p), _) => Some(p.to_string()),
        (None, true) => None,
        (None, false) => req_port
            .filter(|p| {
                let default = match scheme {
                    "http" => "80",
                    "https" => "443",
                    _ => "",
                };
                *p != default && (r.scheme.is_none() || default.is_empty())
            })
            .map(str::to_string),
    };
    let (path, query) = split_query(path_and_query);
    let (new_path, new_query) = match &r.path {
        Some(PathRedirect::Path(p)) => match p.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (p.clone(), query.map(str::to_string)),
        },
        Some(PathRedirect::Prefix(p)) => {
            (replace_prefix(matched, path, p), query.map(str::to_string))
        }
        None => (path.to_string(), query.map(str::to_string)),
    };
    let new_query = new_query.filter(|q| !r.strip_query && !q.is_empty());
    let mut out = format!("{scheme}://{host}");
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port);
    }
    out.push_str(&new_path);
    if let Some(q) = new_query {
        out.push('?');
        out.push_str(&q);
    }
    out
}

/// `host:port` → (`host`, `Some(port)`); IPv6 literals keep their brackets.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rfind(':') {
        Some(i)
            if !authority[i..].contains(']')
                && authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            (&authority[..i], Some(&authority[i + 1..]))
        }
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeaderAdd, UnanchoredPattern};

    fn redirect() -> Redirect {
        Redirect {
            scheme: None,
            host: None,
            port: None,
            path: None,
            strip_query: false,
            response_code: 301,
        }
    }

    #[test]
    fn redirect_locations_follow_envoy() {
        let prefix = PathMatch::Prefix("/old".into());
        let mut r = redirect();
        r.path = Some(PathRedirect::Path("/new".into()));
        assert_eq!(
            redirect_location(&r, &prefix, "http", "a.com:8080", "/old/x?q=1"),
            "http://a.com:8080/new?q=1"
        );
        r.path = Some(PathRedirect::Prefix("/v2".into()));
        r.host = Some("b.com".into());
        assert_eq!(
            redirect_location(&r, &prefix, "http", "a.com:8080", "/old/x?q=1"),
            "http://b.com/v2/x?q=1"
        );
        r.scheme = Some("https".into());
        r.port = Some(8443);
        r.strip_query = true;
        assert_eq!(
            redirect_location(&r, &prefix, "http", "a.com", "/old/x?q=1"),
            "https://b.com:8443/v2/x"
        );
        let mut r = redirect();
        r.scheme = Some("https".into());
        assert_eq!(
            redirect_location(&r, &prefix, "http", "a.com:80", "/p"),
            "https://a.com/p"
        );
        assert_eq!(
            redirect_location(&redirect(), &prefix, "http", "a.com:80", "/p"),
            "http://a.com/p"
        );
    }

    #[test]
    fn path_rewrites_keep_the_query() {
        let mut action = crate::routing::tests::action("c");
        action.prefix_rewrite = Some("/v2/".into());
        assert_eq!(
            rewrite_path(
                &action,
                &PathMatch::Prefix("/api/".into()),
                "/api/items?x=1"
            )
            .as_deref(),
            Some("/v2/items?x=1")
        );
        action.prefix_rewrite = None;
        action.regex_rewrite = Some(RegexRewrite {
            pattern: UnanchoredPattern(regex::Regex::new("^/service/([^/]+)(/.*)$").expect("re")),
            substitution: "\\2/instance/\\1".into(),
        });
        assert_eq!(
            rewrite_path(
                &action,
                &PathMatch::Prefix("/".into()),
                "/service/foo/v1/api?y"
            )
            .as_deref(),
            Some("/v1/api/instance/foo?y")
        );
    }

    #[test]
    fn header_mutations_remove_then_add() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("1"));
        h.insert("x-gone", HeaderValue::from_static("1"));
        let add = |name: &str, action| HeaderAdd {
            name: name.into(),
            value: "2".into(),
            action,
        };
        apply_header_mutations(
            &mut h,
            &HeaderMutations {
                add: vec![
                    add("x-a", AppendAction::AppendIfExistsOrAdd),
                    add("x-b", AppendAction::OverwriteIfExistsOrAdd),
                    add("x-c", AppendAction::OverwriteIfExists),
                    add("x-d", AppendAction::AddIfAbsent),
                ],
                remove: vec!["x-gone".into()],
            },
        );
        let all = |n: &str| -> Vec<&str> {
            h.get_all(n)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        };
        assert_eq!(all("x-a"), ["1", "2"]);
        assert_eq!(all("x-b"), ["2"]);
        assert!(all("x-c").is_empty());
        assert_eq!(all("x-d"), ["2"]);
        assert!(all("x-gone").is_empty());
    }
}
