//! The connection manager's path normalization (`normalize_path`, `merge_slashes`), applied to
//! `:path` before authorization and routing, so `/./admin`, `/%61dmin` and `/a/../admin` are
//! all `/admin` to policies, routes and the app, as with Envoy (whose `normalize_path` is
//! RFC 3986 normalization by Chromium's URL canonicalizer). The query is left as it is.

use crate::config::PathNormalization;

/// Normalizes the request's `:path` in place as the connection manager is configured to.
pub(crate) fn apply<B>(config: PathNormalization, req: &mut http::Request<B>) {
    if !config.normalize_path && !config.merge_slashes && !config.unescape_slashes {
        return;
    }
    let Some(pq) = req.uri().path_and_query() else {
        return;
    };
    let original = pq.as_str();
    let normalized = normalize(config, original);
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

/// `path_and_query` as Envoy's connection manager rewrites it, in Envoy's order: escaped
/// slashes decoded (`UNESCAPE_AND_FORWARD`), then RFC 3986 normalization, then slashes merged
/// (so `/%2Fadmin` becomes `//admin`, then `/admin`). The query is left as it is.
pub fn normalize(config: PathNormalization, path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let mut path = path.to_string();
    if config.unescape_slashes {
        path = unescape_slashes(&path);
    }
    if config.normalize_path {
        path = normalize_path(&path, false);
    }
    if config.merge_slashes {
        path = merge_runs(&path);
    }
    format!("{path}{query}")
}

/// `%2F` and `%5C` (either case) decoded to `/` and `\`, as Envoy's `unescapeSlashes`.
fn unescape_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3).unwrap_or("");
        if escape.eq_ignore_ascii_case("%2f") {
            out.push('/');
            rest = &rest[i + 3..];
        } else if escape.eq_ignore_ascii_case("%5c") {
            out.push('\\');
            rest = &rest[i + 3..];
        } else {
            out.push('%');
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
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

/// `path_and_query` normalized: unreserved characters percent-decoded (other escapes kept as
/// they are, case included, as Chromium's canonicalizer in Envoy does; `%2F` stays),
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

/// Decodes `%XX` of unreserved characters, keeps the others, and turns `\` into `/`.
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
                out.extend_from_slice(&bytes[i..i + 3]);
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
    use super::{PathNormalization, normalize, normalize_path};

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
            ("/a%2fb", "/a%2fb"),
            ("/a%20b", "/a%20b"),
            ("/a%2a", "/a%2a"),
            ("/a\\..\\admin", "/admin"),
            ("*", "*"),
            ("/", "/"),
        ] {
            assert_eq!(normalize_path(input, false), want, "{input}");
        }
    }

    #[test]
    fn istio_normalization_levels_match_envoy() {
        let level = |normalize_path, merge_slashes, unescape_slashes| PathNormalization {
            normalize_path,
            merge_slashes,
            unescape_slashes,
        };
        let none = level(false, false, false);
        let base = level(true, false, false);
        let merge = level(true, true, false);
        let decode = level(true, true, true);
        // Istio's own expectations (its normalization integration test) for each level.
        for (input, want_none, want_base, want_merge, want_decode) in [
            (
                "/app/../admin",
                "/app/../admin",
                "/admin",
                "/admin",
                "/admin",
            ),
            ("/app//", "/app//", "/app//", "/app/", "/app/"),
            ("/app/%2f", "/app/%2f", "/app/%2f", "/app/%2f", "/app/"),
            (
                "/xyz%30..//abc",
                "/xyz%30..//abc",
                "/xyz0..//abc",
                "/xyz0../abc",
                "/xyz0../abc",
            ),
            (
                "/app/%2E./admin",
                "/app/%2E./admin",
                "/admin",
                "/admin",
                "/admin",
            ),
            (
                r"/app/\/\/\admin",
                r"/app/\/\/\admin",
                "/app//////admin",
                "/app/admin",
                "/app/admin",
            ),
            (
                r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc",
                r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc",
                "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
                "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
                "/app/admin/abc",
            ),
            (
                "/app//../../admin",
                "/app//../../admin",
                "/admin",
                "/admin",
                "/admin",
            ),
            (
                "/%2Fadmin?q=%2F",
                "/%2Fadmin?q=%2F",
                "/%2Fadmin?q=%2F",
                "/%2Fadmin?q=%2F",
                "/admin?q=%2F",
            ),
            (
                "/%c0%2fadmin",
                "/%c0%2fadmin",
                "/%c0%2fadmin",
                "/%c0%2fadmin",
                "/%c0/admin",
            ),
        ] {
            assert_eq!(normalize(none, input), want_none, "NONE {input}");
            assert_eq!(normalize(base, input), want_base, "BASE {input}");
            assert_eq!(normalize(merge, input), want_merge, "MERGE_SLASHES {input}");
            assert_eq!(
                normalize(decode, input),
                want_decode,
                "DECODE_AND_MERGE_SLASHES {input}"
            );
        }
    }

    #[test]
    fn slashes_merge_only_when_asked() {
        assert_eq!(normalize_path("//admin", false), "//admin");
        assert_eq!(normalize_path("//admin//x", true), "/admin/x");
        assert_eq!(normalize_path("/a//./admin?q=//", true), "/a/admin?q=//");
    }
}
