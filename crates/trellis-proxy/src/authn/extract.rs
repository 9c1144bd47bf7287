//! Where tokens are found in a request (headers with a prefix, query parameters, cookies),
//! and how a verified one is removed (from headers only, as Envoy does) unless forwarded.

use http::HeaderMap;
use http::header::COOKIE;

use crate::config::JwtProvider;

/// Envoy's default location when a provider names none: `Authorization: Bearer <token>`.
pub const DEFAULT_HEADER: &str = "authorization";
/// Its prefix.
pub const DEFAULT_PREFIX: &str = "Bearer ";
/// Envoy's default query parameter.
pub const DEFAULT_PARAM: &str = "access_token";

/// Where a token was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A header, with the prefix before the token.
    Header {
        /// Lowercase name.
        name: String,
        /// The prefix (may be empty).
        prefix: String,
    },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

/// A token and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The token text.
    pub token: String,
    /// Its location.
    pub location: Location,
}

/// The locations a provider reads (Envoy's defaults when it names none).
pub fn locations(provider: &JwtProvider) -> Vec<Location> {
    if provider.uses_default_locations() {
        return vec![
            Location::Header {
                name: DEFAULT_HEADER.to_string(),
                prefix: DEFAULT_PREFIX.to_string(),
            },
            Location::Param(DEFAULT_PARAM.to_string()),
        ];
    }
    let mut out: Vec<Location> = provider
        .from_headers
        .iter()
        .map(|h| Location::Header {
            name: h.name.to_ascii_lowercase(),
            prefix: h.value_prefix.clone(),
        })
        .collect();
    out.extend(provider.from_params.iter().cloned().map(Location::Param));
    out.extend(provider.from_cookies.iter().cloned().map(Location::Cookie));
    out
}

/// The tokens present at `locations`, in order, each at most once.
pub fn find(headers: &HeaderMap, query: Option<&str>, locations: &[Location]) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for location in locations {
        let token = match location {
            Location::Header { name, prefix } => headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| header_token(v, prefix)),
            Location::Param(name) => query.and_then(|q| query_param(q, name)),
            Location::Cookie(name) => headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| cookie(v, name)),
        };
        if let Some(token) = token
            && !out
                .iter()
                .any(|f| f.token == token && f.location == *location)
        {
            out.push(Found {
                token,
                location: location.clone(),
            });
        }
    }
    out
}

/// The token after `prefix` (Envoy: a header without the prefix carries no token).
fn header_token(value: &str, prefix: &str) -> Option<String> {
    let rest = value.strip_prefix(prefix)?;
    let token = rest.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// The first value of query parameter `name`, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name && !v.is_empty()).then(|| percent_decode(v))
    })
}

fn cookie(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim() == name && !v.is_empty()).then(|| v.to_string())
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes a verified token from its header. As in Envoy, a token in a query parameter or a
/// cookie stays where it is (Envoy's `removeJwt` does nothing for those locations).
pub fn remove(headers: &mut HeaderMap, found: &Found) {
    if let Location::Header { name, .. } = &found.location {
        headers.remove(name.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc_header(name: &str, prefix: &str) -> Location {
        Location::Header {
            name: name.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn tokens_are_found_after_their_prefix_only() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "Bearer abc.def.ghi".parse().expect("value"),
        );
        h.insert("x-jwt", "abc".parse().expect("value"));
        let found = find(&h, None, &[loc_header("authorization", "Bearer ")]);
        assert_eq!(found[0].token, "abc.def.ghi");
        assert!(find(&h, None, &[loc_header("x-jwt", "Token ")]).is_empty());
        assert_eq!(find(&h, None, &[loc_header("x-jwt", "")])[0].token, "abc");
    }

    #[test]
    fn query_and_cookie_tokens_are_found_and_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            "a=1; session=tok.en.x; b=2".parse().expect("value"),
        );
        let q = "x=1&access_token=t.o%2Ek&y=2";
        let found = find(&h, Some(q), &[Location::Param("access_token".into())]);
        assert_eq!(found[0].token, "t.o.k");
        let found = find(&h, None, &[Location::Cookie("session".into())]);
        assert_eq!(found[0].token, "tok.en.x");
        remove(&mut h, &found[0]);
        assert!(h.get("cookie").is_some(), "Envoy keeps cookie tokens");
        let mut h = HeaderMap::new();
        h.insert("x-jwt", "a.b.c".parse().expect("value"));
        let found = find(&h, None, &[loc_header("x-jwt", "")]);
        remove(&mut h, &found[0]);
        assert!(h.get("x-jwt").is_none());
    }
}
