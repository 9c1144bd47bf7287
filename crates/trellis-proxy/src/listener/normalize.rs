//! The connection manager's path normalization (`normalize_path`, `merge_slashes`), applied to
//! `:path` before authorization and routing, so `/./admin`, `/%61dmin` and `/a/../admin` are
//! all `/admin` to policies, routes and the app, as with Envoy (whose `normalize_path` is
//! RFC 3986 normalization by Chromium's URL canonicalizer). The query is left as it is.

use crate::config::PathNormalization;

/// Normalizes the request's `:path` in place as the connection manager is configured to.
pub(crate) fn apply<B>(config: PathNormalization, req: &mut http::Request<B>) {
    if !config.normalize_path && !config.merge_slashes {
        return;
    }
    let Some(pq) = req.uri().path_and_query() else {
        return;
    };
    let original = pq.as_str();
    let normalized = if config.normalize_path {
        normalize_path(original, config.merge_slashes)
    } else {
        merge(original)
    };
    if normalized == original {
        return;
    }
    let mut parts = req.uri().clone().into_parts();
    match http::uri::PathAndQuery::try_from(normalized.as_str()) {
        Ok(p) => parts.path_and_query = Some(p),
        Err(_) => return,
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// `merge_slashes` alone: runs of `/` in the path merged, the query untouched.
fn merge(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    format!("{}{query}", merge_runs(path))
}

fn merge_runs(path: &str) -> String {
    let mut merged = String::with_capacity(path.len());
    let mut last_slash = false;
    for c in path.chars() {
        if c == '/' && last_slash {
            continue;
        }
        last_slash = c == '/';
        merged.push(c);
    }
    merged
}

/// RFC 3986 unreserved characters: percent-encoded, they are decoded.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `path_and_query` normalized: unreserved characters percent-decoded (other escapes kept,
/// hex digits uppercased, `%2F` stays: `path_with_escaped_slashes_action: KEEP_UNCHANGED`),
/// `\` turned into `/`, dot segments removed, and with `merge_slashes` runs of `/` merged.
/// A path not starting with `/` (`*`) is returned as is.
pub fn normalize_path(path_and_query: &str, merge_slashes: bool) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    if !path.starts_with('/') && !path.starts_with('\\') {
        return path_and_query.to_string();
    }
    let decoded = decode_unreserved(path);
    let segments = remove_dot_segments(&decoded);
    if merge_slashes {
        return format!("{}{query}", merge_runs(&segments));
    }
    format!("{segments}{query}")
}

/// Decodes `%XX` of unreserved characters, uppercases the others, and turns `\` into `/`.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            let c = h * 16 + l;
            if unreserved(c) {
                out.push(c);
            } else {
                out.push(b'%');
                out.push(bytes[i + 1].to_ascii_uppercase());
                out.push(bytes[i + 2].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        out.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    // Only ASCII bytes were replaced by ASCII bytes: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// RFC 3986 §5.2.4 on an absolute path: `.` segments dropped, `..` removes the one before
/// (never above the root); a trailing `.`/`..` leaves a trailing `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    #[test]
    fn dot_segments_and_unreserved_escapes_are_resolved() {
        for (input, want) in [
            ("/admin", "/admin"),
            ("/./admin", "/admin"),
            ("/a/../admin", "/admin"),
            ("/../admin", "/admin"),
            ("/a/b/../../admin?x=/../y", "/admin?x=/../y"),
            ("/%61dmin", "/admin"),
            ("/%2e%2E/admin", "/admin"),
            ("/admin/.", "/admin/"),
            ("/admin/x/..", "/admin/"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%20b", "/a%20b"),
            ("/a%2a", "/a%2A"),
            ("/a\\..\\admin", "/admin"),
            ("*", "*"),
            ("/", "/"),
        ] {
            assert_eq!(normalize_path(input, false), want, "{input}");
        }
    }

    #[test]
    fn slashes_merge_only_when_asked() {
        assert_eq!(normalize_path("//admin", false), "//admin");
        assert_eq!(normalize_path("//admin//x", true), "/admin/x");
        assert_eq!(normalize_path("/a//./admin?q=//", true), "/a/admin?q=//");
    }
}
