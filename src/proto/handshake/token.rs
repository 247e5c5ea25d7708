//! Comma-separated token lists of HTTP fields (RFC 9110 §5.6.1).

use http::header::AsHeaderName;
use http::HeaderMap;

/// Looks for `token` (case-insensitive) in the comma-separated lists of every `name` field.
///
/// Returns `None` when there is no such field, `Some(found)` otherwise. Several fields of the
/// same name count as one list, as HTTP defines.
///
/// ```
/// use http::HeaderMap;
/// use rbeast::proto::handshake::has_token;
/// let mut h = HeaderMap::new();
/// h.append("connection", "keep-alive, Upgrade".parse().unwrap());
/// assert_eq!(has_token(&h, "connection", "upgrade"), Some(true));
/// assert_eq!(has_token(&h, "upgrade", "websocket"), None);
/// ```
pub fn has_token<K: AsHeaderName>(headers: &HeaderMap, name: K, token: &str) -> Option<bool> {
    let mut any = false;
    for value in headers.get_all(name) {
        any = true;
        if list_items(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(token.as_bytes())) {
            return Some(true);
        }
    }
    any.then_some(false)
}

/// The non-empty items of a comma-separated list, with optional white space trimmed.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

/// Trims spaces and tabs at both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn tokens() {
        let h = map(&[("connection", "keep-alive"), ("connection", " UPGRADE ")]);
        assert_eq!(has_token(&h, "connection", "upgrade"), Some(true));
        let h = map(&[("connection", "upgrades, xupgrade")]);
        assert_eq!(has_token(&h, "connection", "upgrade"), Some(false));
        let h = map(&[("connection", "")]);
        assert_eq!(has_token(&h, "connection", "upgrade"), Some(false));
        let h = map(&[("upgrade", ",,websocket,")]);
        assert_eq!(has_token(&h, "upgrade", "websocket"), Some(true));
        assert_eq!(has_token(&h, "connection", "upgrade"), None);
    }

    #[test]
    fn trims() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
    }
}
